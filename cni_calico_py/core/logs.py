"""Logging: stderr at warning level until the config says otherwise.

stdout belongs to the result, so no handler here ever writes to it.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER_NAME = "calico-py"
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# Where a traceback goes when no log file is configured: it must not reach
# stdout or stderr, yet an operator must be able to find it.
FALLBACK_LOG_DIR = "/var/log/calico-py"

log = logging.getLogger(LOGGER_NAME)
_configured_file: str | None = None


# Calico's CNI plugin defaults: rotate at 100 MB, keep 10 old files.
DEFAULT_MAX_SIZE_MB = 100
DEFAULT_MAX_COUNT = 10


def configure(level: str = "warning", path: str | None = None,
              max_size_mb: int = DEFAULT_MAX_SIZE_MB, max_count: int = DEFAULT_MAX_COUNT) -> None:
    """Log at `level` to `path` (else stderr), rotating `path` first when it is full.

    Every request configures logging anew, cold process and agent worker
    alike, and one request writes a few KB: so the size is checked here, at
    the start of each request, not per record.
    """
    global _configured_file
    root = logging.getLogger(LOGGER_NAME)
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if path:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            _rotate_if_full(path, max_size_mb * 1024 * 1024, max_count)
            handler = logging.FileHandler(path)
            _configured_file = path
        except OSError as err:
            handler = logging.StreamHandler(sys.stderr)
            _configured_file = None
            print(f"calico-py: cannot open log file {path}: {err}", file=sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
        _configured_file = None
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def _rotate_if_full(path: str, max_bytes: int, backups: int) -> None:
    """Rename `path` to `path`.1 (and so on, keeping `backups`) once it holds `max_bytes`.

    Many processes log to one file: the first to see it full rotates it while
    holding an flock on it; the others, once they get the lock, find the
    name pointing at a new file and leave it alone.
    """
    try:
        if os.stat(path).st_size < max_bytes:
            return
    except OSError:
        return
    import fcntl
    import logging.handlers  # only when rotating: it costs a cold request ~7 ms to import

    with open(path, "ab") as full:
        fcntl.flock(full, fcntl.LOCK_EX)
        try:
            # Another process may have rotated it since the first look: then this
            # opened the new file, which is not full.
            if (os.stat(path).st_ino != os.fstat(full.fileno()).st_ino
                    or os.fstat(full.fileno()).st_size < max_bytes):
                return
        except OSError:
            return
        rotator = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes,
                                                       backupCount=backups, delay=True)
        rotator.doRollover()
        rotator.close()


def record_internal_error(summary: str, traceback_text: str) -> str:
    """Write a traceback where an operator finds it; returns where that is."""
    if _configured_file:
        log.error("%s\n%s", summary, traceback_text)
        return _configured_file
    import tempfile  # only on this rare path: it costs a pod ~6 ms to import

    for directory in (FALLBACK_LOG_DIR, tempfile.gettempdir()):
        path = os.path.join(directory, "internal-errors.log")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:
                out.write(f"{summary}\n{traceback_text}\n")
            log.error("%s (traceback in %s)", summary, path)
            return path
        except OSError:
            continue
    log.error("%s", summary)
    return "stderr"
