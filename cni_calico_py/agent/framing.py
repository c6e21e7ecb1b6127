"""Length-prefixed JSON frames: one read is never assumed to be one message."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

HEADER = struct.Struct("!I")
# A network config with a big prevResult is a few KiB; this leaves room and
# still refuses a client that tries to make the agent hold gigabytes. Callers
# never send a bigger request: they serve it themselves.
MAX_FRAME = 4 * 1024 * 1024
DEFAULT_SOCKET = "/run/calico-py/agent.sock"
SOCKET_ENV = "CALICO_PY_AGENT_SOCKET"
# CALICO_PY_AGENT_SOCKET=off: callers never forward (the agent itself still
# serves the default path; "off" is never a socket path).
OFF = "off"
# Set by the launcher when it runs the frozen program for a CNI request it
# could not forward: the agent was tried already, do not try again.
TRIED_ENV = "CALICO_PY_AGENT_TRIED"
# The only variables a request frame carries; the worker takes no others.
FORWARDED_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
# One byte each way before the work starts: the agent says whether it will
# serve the request; the client's go byte commits it to the agent's answer.
READY = b"R"
NOT_READY = b"N"
GO = b"G"
_EXIT_CODE = struct.Struct("!i")


class FrameError(Exception):
    """The peer sent something that is not a frame, went away mid-frame or took too long."""


def socket_path(environ: Mapping[str, str]) -> str | None:
    """The agent's socket as configured; None when forwarding is off."""
    configured = environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    return None if configured == OFF else configured


def encode(payload: Any) -> bytes:
    """The frame for `payload`; FrameError if the agent would refuse its size."""
    data = json.dumps(payload).encode()
    if len(data) > MAX_FRAME:
        raise FrameError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME} byte limit")
    return HEADER.pack(len(data)) + data


def send(sock: socket.socket, payload: Any) -> None:
    sock.sendall(encode(payload))


def _read_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    """`size` bytes; with a deadline (time.monotonic()), all of them by then."""
    chunks = []
    remaining = size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameError(f"frame not complete in time: {remaining} of {size} bytes unread")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(remaining, 65536))
        except TimeoutError:
            if deadline is None:
                raise
            raise FrameError(f"frame not complete in time: {remaining} of {size} bytes unread") from None
        if not chunk:
            raise FrameError(f"connection closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, deadline: float | None = None) -> Any:
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size, deadline))
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        return json.loads(_read_exactly(sock, size, deadline))
    except ValueError as err:
        raise FrameError(f"frame is not JSON: {err}") from None


def send_result(sock: socket.socket, exit_code: int, output: bytes) -> None:
    """The result frame: the exit code, then the bytes to print (no JSON to decode)."""
    body = _EXIT_CODE.pack(exit_code) + output
    sock.sendall(HEADER.pack(len(body)) + body)


def receive_result(sock: socket.socket, deadline: float | None = None) -> tuple[int, bytes]:
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size, deadline))
    if not _EXIT_CODE.size <= size <= MAX_FRAME:
        raise FrameError(f"result frame of {size} bytes")
    body = _read_exactly(sock, size, deadline)
    (exit_code,) = _EXIT_CODE.unpack_from(body)
    return exit_code, body[_EXIT_CODE.size:]


def netns_identity() -> list[int]:
    """Which network namespace this process is in."""
    import os

    info = os.stat("/proc/self/ns/net")
    return [info.st_dev, info.st_ino]
