"""One operation at a time on an attachment: (network, container ID, ifname).

A runtime may retry ADD while the first ADD still runs, send DEL while an ADD
it gave up on is still running, or start two sandboxes' ADDs of one pod at
once. Each of those interleavings can leave a pod wired with an address the
store calls free, or free a winner's address in a loser's rollback. Holding
this lock for the whole of ADD, DEL and CHECK makes them run one after the
other, whether they come through agent workers or cold processes: it is an
flock, so it also dies with a killed holder.

The lock files live on tmpfs (`/run`): they only need to outlive the
operations, not a reboot. The holder removes the file before it lets go; a
waiter that then locks the removed file sees it unlinked and tries again on
a new one (filelock checks st_nlink after flock), so no file is left behind
per pod and two holders never meet.

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
DEFAULT_DIRECTORY = "/run/calico-py/attachments"
WAIT_SECONDS = 120.0


def lock_path(network: str, container_id: str, ifname: str) -> str:
    """The lock file of one attachment; hashed, as names and ifnames may hold any byte."""
    directory = os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    key = "\0".join((network, container_id, ifname)).encode("utf-8", "surrogateescape")
    return os.path.join(directory, hashlib.sha256(key).hexdigest()[:32] + ".lock")


@contextmanager
def held(network: str, container_id: str, ifname: str, verb: str) -> Iterator[None]:
    """Hold the attachment's lock, or raise CNIError 11 after WAIT_SECONDS."""
    path = lock_path(network, container_id, ifname)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot create the attachment lock directory "
                       f"{os.path.dirname(path)}: {err.strerror}", path) from None
    with locks.held(
        path, WAIT_SECONDS, remove=True,
        busy=f"another operation on container {container_id} ifname {ifname} in network "
             f"{network} still runs after {WAIT_SECONDS:g} s; try {verb} again later",
        where=f"{verb} of container {container_id} ifname {ifname} started",
    ):
        yield
