"""The executable's thin path: hand the request to the agent if one answers.

Imports nothing heavy, so a served request costs little more than the
interpreter's start. The installed executables do the same in C
(launcher/launcher.c); this is the path of the Python entry points.
Protocol: the client sends the request; the agent answers ready or not;
the client sends the go byte and waits for the result.

Never twice, never lost: before the go byte nothing has happened, so any
failure (no socket, no answer, "not ready", a request too big to forward)
means the client serves the request itself. Once the go byte is sent the
agent owns the request, and the client never runs it: if no complete answer
comes (worker killed, agent stopped, deadline, bad frame) it reports error 11,
try again later.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping

from . import framing

CONNECT_TIMEOUT = 0.5
READY_TIMEOUT = 2.0
# Bounds, each above the one before it, so the caller always hears how the
# worker's request ended (an answer, or EOF when the worker dies) before it
# gives up: lock waits (ipam.lockTimeoutSeconds, at most 120 s; the
# attachment lock, 120 s) < the worker's deadline (worker.py,
# REQUEST_DEADLINE_SECONDS, 300 s from accept) < this, from the go byte.
# launcher.c's RESULT_DEADLINE_MS is the same.
RESULT_DEADLINE = 330.0


def forward(environ: Mapping[str, str], stdin: bytes, program: str) -> tuple[int, str] | None:
    """(exit code, stdout) from the agent, or None when the caller must serve it."""
    path = framing.socket_path(environ)
    if path is None or not os.path.exists(path):
        return None
    request = {
        "op": "cni",
        "program": program,
        # latin-1 maps every byte to one code point: the environment's bytes (as
        # the launcher sends them too) and stdin go through unchanged.
        "env": {k: os.fsencode(environ[k]).decode("latin-1")
                for k in framing.FORWARDED_ENV if k in environ},
        "stdin": stdin.decode("latin-1"),
    }
    try:
        frame = framing.encode(request)
    except framing.FrameError:
        return None  # more than the agent takes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.sendall(frame)
        sock.settimeout(READY_TIMEOUT)
        if sock.recv(1) != framing.READY:
            sock.close()
            return None
        sock.sendall(framing.GO)
    except OSError:
        sock.close()
        return None
    try:
        code, output = framing.receive_result(sock, time.monotonic() + RESULT_DEADLINE)
        return code, output.decode()
    except framing.FrameError as err:
        return 1, unanswered(stdin, str(err))
    except (OSError, UnicodeDecodeError) as err:
        return 1, unanswered(stdin, f"{type(err).__name__}: {err}")
    finally:
        sock.close()


def unanswered(stdin: bytes, what: str) -> str:
    """Error 11 in the request's cniVersion: the agent took the request and gave no answer."""
    from ..core.errors import CNIError, Code
    from ..core.versions import LATEST, SUPPORTED_VERSIONS

    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        version = None
    error = CNIError(
        Code.TRY_AGAIN_LATER,
        f"the node agent took the request but gave no complete answer ({what}); "
        "it was not run again here",
        "the request may have run in part: try again later (the runtime's DEL cleans up "
        "what it left)",
    )
    return json.dumps(error.to_json(version if version in SUPPORTED_VERSIONS else LATEST)) + "\n"
