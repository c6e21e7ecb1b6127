"""Opening a pod's network namespace, and entering it for what netlink cannot do from outside.

Every open of CNI_NETNS goes through `open_checked`: the path must name a
network namespace, and not the one this process runs in (the node's own),
or a DEL would delete the node's uplink and an ADD rewrite its sysctls.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import CNIError, Code

CLONE_NEWNET = 0x40000000
# ioctl(2) on a namespace file: which kind of namespace it is (linux/nsfs.h).
NS_GET_NSTYPE = 0xB703
_NAMESPACE_KINDS = {
    0x00000080: "time", 0x00020000: "mount", 0x02000000: "cgroup", 0x04000000: "UTS",
    0x08000000: "IPC", 0x10000000: "user", 0x20000000: "PID", CLONE_NEWNET: "network",
}
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
)
OWN_NETNS = "/proc/self/ns/net"


class NetnsNotFound(Exception):
    """The pod's network namespace path does not exist (the pod is gone)."""


class NetnsRefused(CNIError):
    """CNI_NETNS names something that must not be treated as a pod's network namespace
    (the node's own, or a path that is not a network namespace): error 4, nothing touched."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            Code.INVALID_ENVIRONMENT,
            f"CNI_NETNS {path!r} {reason}",
            "environment variable CNI_NETNS: it must name the pod's own network namespace",
        )


def open_checked(path: str) -> int:
    """A descriptor of the pod's network namespace at `path`; the caller closes it.

    Raises NetnsNotFound when nothing is there, NetnsRefused when what is there
    is not a network namespace or is the one this process runs in.
    """
    if not path:
        raise NetnsNotFound(path)
    if "\0" in path:
        raise NetnsRefused(path, "holds a NUL character")
    if not os.path.isabs(path):
        raise NetnsRefused(path, "is not an absolute path: give the namespace's full path, "
                           "e.g. /var/run/netns/<name> or /proc/<pid>/ns/net")
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NetnsNotFound(path) from None
    except OSError as err:
        raise NetnsRefused(path, f"cannot be looked up: {err.strerror}") from None
    except ValueError as err:  # a name the file system cannot encode
        raise NetnsRefused(path, f"is not a usable path: {err}") from None
    # Namespace files (nsfs) are regular files: anything else is refused before
    # it is opened, so a FIFO or a device is never opened at all.
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        raise NetnsRefused(path, f"is {kind}, not a network namespace")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFound(path) from None
    except OSError as err:
        raise NetnsRefused(path, f"cannot be opened: {err.strerror}") from None
    try:
        _require_network_namespace(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _require_network_namespace(path: str, fd: int) -> None:
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as err:
        if err.errno in (errno.ENOTTY, errno.EINVAL):
            raise NetnsRefused(path, "is a file, not a namespace: expected a network namespace "
                               "such as /var/run/netns/<name> or /proc/<pid>/ns/net") from None
        raise NetnsRefused(path, f"cannot be asked what namespace it is: {err.strerror}") from None
    if kind != CLONE_NEWNET:
        name = _NAMESPACE_KINDS.get(kind, f"kind {kind:#x}")
        raise NetnsRefused(path, f"is a {name} namespace, not a network namespace")
    here = os.stat(OWN_NETNS)
    there = os.fstat(fd)
    if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
        raise NetnsRefused(path, "is the node's own network namespace (the one the plugin runs "
                           "in), not a pod's: the runtime must pass the pod sandbox's namespace")


def require(path: str) -> None:
    """Check `path` the way every open of it is checked (see `open_checked`)."""
    os.close(open_checked(path))


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body inside the netns at `path`, always returning to the original one."""
    target = open_checked(path)
    try:
        original = os.open(OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)
    finally:
        os.close(target)
