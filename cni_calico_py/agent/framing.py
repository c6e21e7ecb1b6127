"""Length-prefixed JSON frames: one read is never assumed to be one message."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

HEADER = struct.Struct("!I")
# A network config with a big prevResult is a few KiB; this leaves room and
# still refuses a client that tries to make the agent hold gigabytes.
MAX_FRAME = 4 * 1024 * 1024
DEFAULT_SOCKET = "/run/calico-py/agent.sock"
SOCKET_ENV = "CALICO_PY_AGENT_SOCKET"
# One byte each way before the work starts: the agent says whether it will
# serve the request; the client's go byte commits it to the agent's answer.
READY = b"R"
NOT_READY = b"N"
GO = b"G"
_EXIT_CODE = struct.Struct("!i")


class FrameError(Exception):
    """The peer sent something that is not a frame, or went away mid-frame."""


def send(sock: socket.socket, payload: Any) -> None:
    data = json.dumps(payload).encode()
    sock.sendall(HEADER.pack(len(data)) + data)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise FrameError(f"connection closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> Any:
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size))
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        return json.loads(_read_exactly(sock, size))
    except ValueError as err:
        raise FrameError(f"frame is not JSON: {err}") from None


def send_result(sock: socket.socket, exit_code: int, output: bytes) -> None:
    """The result frame: the exit code, then the bytes to print (no JSON to decode)."""
    body = _EXIT_CODE.pack(exit_code) + output
    sock.sendall(HEADER.pack(len(body)) + body)


def receive_result(sock: socket.socket) -> tuple[int, bytes]:
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size))
    if not _EXIT_CODE.size <= size <= MAX_FRAME:
        raise FrameError(f"result frame of {size} bytes")
    body = _read_exactly(sock, size)
    (exit_code,) = _EXIT_CODE.unpack_from(body)
    return exit_code, body[_EXIT_CODE.size:]


def netns_identity() -> list[int]:
    """Which network namespace this process is in: the agent must share the caller's."""
    import os

    info = os.stat("/proc/self/ns/net")
    return [info.st_dev, info.st_ino]
