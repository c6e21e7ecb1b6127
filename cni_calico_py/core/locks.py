"""Holding an flock with a bound on the wait: the one way this plugin takes a lock.

flock dies with its holder, so a killed process never leaves a lock held; a
soft (marker file) lock would, hence no fallback to one. A wait that runs
past its bound is CNI error 11 (try again later); a lock that cannot be
taken at all is error 5. While waiting, and once the lock is held, a caller
that has gone away stops the request (core/cancel.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import filelock

from . import cancel
from .errors import CNIError, Code

# filelock polls a held lock. Its default 50 ms between tries dominates a
# burst of ADDs that each hold the lock a few ms; 1 ms burns the CPU the
# holder needs (measured: 64 ADDs at once take 1.25 s at 5 ms, 1.5 s at
# 50 ms, 1.7 s at 1 ms).
POLL_SECONDS = 0.005

# Seconds this process has waited for locks since the last take_waited().
_waited = 0.0


def take_waited() -> float:
    """The lock waits since the last call, for the agent's per-request figures."""
    global _waited
    waited, _waited = _waited, 0.0
    return waited


@contextmanager
def held(path: str, timeout: float, *, busy: str, where: str, remove: bool = False,
         poll: float = POLL_SECONDS) -> Iterator[None]:
    """Hold the flock on `path`.

    `busy` is the error 11 message when the wait passes `timeout`; `where`
    says what the request was about to do, for the caller-gone error.
    `remove` unlinks the file before letting go: a waiter that then locks the
    removed file sees it unlinked and tries again on a new one (filelock
    checks st_nlink after flock), so two holders never meet.
    """
    global _waited
    lock = filelock.FileLock(path, timeout=timeout, fallback_to_soft=False)
    started = time.monotonic()
    try:
        lock.acquire(poll_interval=poll, cancel_check=cancel.caller_gone)
    except filelock.Timeout:
        cancel.check(where)
        raise CNIError(Code.TRY_AGAIN_LATER, busy, path) from None
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot lock {path}: {err.strerror or err}",
                       path) from None
    finally:
        _waited += time.monotonic() - started
    try:
        # The caller may have gone while this waited: its runtime has moved on
        # (to a DEL, perhaps already done), so the request must not start now.
        cancel.check(where)
        yield
    finally:
        if remove:
            with suppress(OSError):
                os.unlink(path)
        lock.release()
