"""The executable's thin path: hand the request to the agent if one answers.

Imports nothing heavy, so a served request costs little more than the
interpreter's start. The installed executables do the same in C
(launcher/launcher.c); this is the path of the Python entry points.
Protocol: the client sends the request; the agent answers ready or not;
the client sends the go byte and waits for the result.
Before the go byte nothing has happened, so a missing, dead or hung agent
means the client handles the request itself. After it, the agent owns the
request; only a broken connection (the agent's worker died) sends the client
back to the in-process path, where every step is safe to repeat.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from . import framing

CONNECT_TIMEOUT = 0.5
READY_TIMEOUT = 2.0
# An ADD waits for the store lock at most its own bound; this is far above it.
RESULT_TIMEOUT = 300.0

FORWARDED_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def socket_path(environ: Mapping[str, str]) -> str:
    return environ.get(framing.SOCKET_ENV) or framing.DEFAULT_SOCKET


def forward(environ: Mapping[str, str], stdin: bytes, program: str) -> tuple[int, str] | None:
    """(exit code, stdout) from the agent, or None when the caller must serve it."""
    path = socket_path(environ)
    if environ.get(framing.SOCKET_ENV) == "off" or not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        request = {
            "op": "cni",
            "program": program,
            "env": {k: environ[k] for k in FORWARDED_ENV if k in environ},
            # latin-1 maps every byte to one code point: stdin goes through unchanged.
            "stdin": stdin.decode("latin-1"),
            "netns": framing.netns_identity(),
        }
        framing.send(sock, request)
        sock.settimeout(READY_TIMEOUT)
        if sock.recv(1) != framing.READY:
            return None
        sock.sendall(framing.GO)
    except (OSError, framing.FrameError, ValueError):
        sock.close()
        return None
    try:
        sock.settimeout(RESULT_TIMEOUT)
        code, output = framing.receive_result(sock)
        return code, output.decode()
    except (OSError, framing.FrameError, ValueError):
        return None
    finally:
        sock.close()
