"""Requests served cold while the agent's socket exists: counted for the agent's metrics.

A caller that serves a request itself although an agent socket exists (no
worker took it in time, it declined, the agent was killed) appends the verb
to `<socket>.fallbacks`. The file exists only while an agent with metrics on
has made it, so without one this is a failed open and nothing more. Standard
library only: it runs on the cold path.
"""

from __future__ import annotations

import os


def fallback_file(socket_path: str) -> str:
    return socket_path + ".fallbacks"


def record(socket_path: str, verb: str) -> None:
    try:
        fd = os.open(fallback_file(socket_path), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return
    try:
        # One short write with O_APPEND: lines from many callers never interleave.
        os.write(fd, f"{verb[:16]}\n".encode("ascii", "replace"))
    except OSError:
        pass
    finally:
        os.close(fd)
