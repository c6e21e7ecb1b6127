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


def configure(level: str = "warning", path: str | None = None) -> None:
    global _configured_file
    root = logging.getLogger(LOGGER_NAME)
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if path:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
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
