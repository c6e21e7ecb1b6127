"""Holding an flock with a bound on the wait: the one way this plugin takes a lock.

flock dies with its holder, so a killed process never leaves a lock held; a
soft (marker file) lock would, hence none here. A wait that runs past its
bound is CNI error 11 (try again later); a lock that cannot be taken at all
is error 5. While waiting, and once the lock is held, a caller that has gone
away stops the request (core/cancel.py).

An flock belongs to an inode, not to a name: once the file is unlinked, by
its last holder, an operator, or a service manager removing its runtime
directory, the next process creates a new inode under the same name and
locks that one, while the old holder still holds the old one. So a lock
counts as taken only when, after the flock, the path still names the inode
it is on (else it is taken again on the new file); a holder unlinks the
file only while it still names its own inode; and `Held.still_ours` lets a
holder check, before a step that must not run twice at once, that nobody
could have taken the lock beside it. filelock, which this replaces, checks
none of these and cost ~16 ms of import on every cold request.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from . import cancel
from .errors import CNIError, Code

# Between tries on a held lock. 50 ms dominated a burst of ADDs that each
# hold the lock a few ms; 1 ms burns the CPU the holder needs (measured: 64
# ADDs at once take 1.25 s at 5 ms, 1.5 s at 50 ms, 1.7 s at 1 ms).
POLL_SECONDS = 0.005

# Seconds this process has waited for locks since the last take_waited().
_waited = 0.0


def take_waited() -> float:
    """The lock waits since the last call, for the agent's per-request figures."""
    global _waited
    waited, _waited = _waited, 0.0
    return waited


@dataclass
class Held:
    """One held lock: the path and the descriptor whose inode carries the flock."""

    path: str
    fd: int

    def still_ours(self) -> bool:
        """Whether the path still names the locked inode: if not, another process may hold it."""
        return names_inode(self.path, self.fd)


def names_inode(path: str, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


@contextmanager
def held(path: str, timeout: float, *, busy: str, where: str, remove: bool = False,
         poll: float = POLL_SECONDS) -> Iterator[Held]:
    """Hold the flock on `path`.

    `busy` is the error 11 message when the wait passes `timeout`; `where`
    says what the request was about to do, for the caller-gone error.
    `remove` unlinks the file before letting go, if it is still this lock's:
    a waiter that then locks the removed file finds the path no longer names
    it and tries again on a new one, so two holders never meet.
    """
    global _waited
    started = time.monotonic()
    try:
        fd = _acquire(path, started + timeout, poll)
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot lock {path}: {err.strerror or err}",
                       path) from None
    finally:
        _waited += time.monotonic() - started
    if fd is None:
        cancel.check(where)
        raise CNIError(Code.TRY_AGAIN_LATER, busy, path)
    lock = Held(path, fd)
    try:
        # The caller may have gone while this waited: its runtime has moved on
        # (to a DEL, perhaps already done), so the request must not start now.
        cancel.check(where)
        yield lock
    finally:
        if remove and lock.still_ours():
            with suppress(OSError):
                os.unlink(path)
        os.close(fd)  # releases the flock


def _acquire(path: str, deadline: float, poll: float) -> int | None:
    """The descriptor holding the flock on the inode `path` names; None past the deadline."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            locked = _try_flock(fd)
            while not locked and time.monotonic() < deadline and not cancel.caller_gone():
                time.sleep(poll)
                locked = _try_flock(fd)
        except BaseException:
            os.close(fd)
            raise
        if locked and names_inode(path, fd):
            return fd
        os.close(fd)
        if not locked:
            return None
        # Locked an inode that its holder (or someone else) unlinked meanwhile:
        # the lock now lives on whatever the path names.


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True
