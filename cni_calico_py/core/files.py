"""Replacing a file whole: a reader sees the old content or the new, never a mix.

The new content goes to a temporary name in the same directory and is renamed
over the target. `durable` also syncs the file and its directory, so the new
content survives a crash once this returns; content that is only a hint (a
cache, where to start a search) can skip that cost.
"""

from __future__ import annotations

import os
from contextlib import suppress

TEMP_PREFIX = ".tmp-"


def replace(path: str, data: str | bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file renamed over it.

    A temporary file left by a crash starts with TEMP_PREFIX, so a directory's
    owner can recognise and remove it.
    """
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.path.basename(path)}-{os.urandom(4).hex()}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        sync_directory(directory)


def sync_directory(directory: str) -> None:
    """Make the directory's entries (a rename, an unlink) survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
