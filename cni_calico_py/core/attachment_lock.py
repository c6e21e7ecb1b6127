"""One operation at a time on an attachment: (network, container ID, ifname).

A runtime may retry ADD while the first ADD still runs, send DEL while an ADD
it gave up on is still running, or start two sandboxes' ADDs of one pod at
once. Each of those interleavings can leave a pod wired with an address the
store calls free, or free a winner's address in a loser's rollback. Holding
this lock for the whole of ADD, DEL and CHECK makes them run one after the
other, whether they come through agent workers or cold processes: it is an
flock, so it also dies with a killed holder.

The lock files live on tmpfs (`/run/lock`): they only need to outlive the
operations, not a reboot. Never under the agent's runtime directory: its
service manager removes that when the agent stops or restarts, while cold
processes and finishing workers still hold locks in it. The holder removes
the file before it lets go; a waiter that then locks the removed file finds
the path no longer names it and tries again on a new one (core/locks.py), so
no file is left behind per pod and two holders never meet. A lock whose file
something else removed while it was held is no longer exclusive: `confirm`
says so before a step that must not run beside another request of the
attachment, and the request stops there instead.

Bounds (the agent's deadlines are ordered after them): the wait here is at
most `WAIT_SECONDS`, the IPAM store lock's at most its lockTimeoutSeconds
(<= 120 s); an agent worker's request deadline (300 s) is above both, and the
caller's forwarding deadline (330 s) above that.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from . import locks
from .errors import CNIError, Code

DIRECTORY_ENV = "CALICO_PY_ATTACHMENT_LOCKS"
DEFAULT_DIRECTORY = "/run/lock/calico-py/attachments"
WAIT_SECONDS = 120.0


def lock_path(network: str, container_id: str, ifname: str) -> str:
    """The lock file of one attachment; hashed, as names and ifnames may hold any byte."""
    directory = os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    key = "\0".join((network, container_id, ifname)).encode("utf-8", "surrogateescape")
    return os.path.join(directory, hashlib.sha256(key).hexdigest()[:32] + ".lock")


@contextmanager
def held(network: str, container_id: str, ifname: str, verb: str,
         wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the attachment's lock, or raise CNIError 11 after `wait` seconds."""
    global _current
    path = lock_path(network, container_id, ifname)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot create the attachment lock directory "
                       f"{os.path.dirname(path)}: {err.strerror}", path) from None
    with locks.held(
        path, wait, remove=True,
        busy=f"another operation on container {container_id} ifname {ifname} in network "
             f"{network} still runs after {wait:g} s; try {verb} again later",
        where=f"{verb} of container {container_id} ifname {ifname} started",
    ) as lock:
        _current = lock
        try:
            yield
        finally:
            _current = None


# The lock this process holds now: one request at a time per process.
_current: locks.Held | None = None


def intact() -> bool:
    """Whether no other request of the attachment can have run since this one took the lock."""
    return _current is None or _current.still_ours()


def confirm(step: str) -> None:
    """Raise error 11 before `step` if the lock's file was removed or replaced while held."""
    if _current is not None and not _current.still_ours():
        raise CNIError(
            Code.TRY_AGAIN_LATER,
            f"the attachment lock {_current.path} was removed while this request held it, so "
            f"another request of the attachment may have run meanwhile; {step} was not done",
            "try again: the retry takes the lock anew and finds the state as it is",
        )
