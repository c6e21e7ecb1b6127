"""Entering a pod's network namespace, for the few things netlink cannot do from outside."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import CNIError, Code

CLONE_NEWNET = 0x40000000


class NetnsNotFound(Exception):
    """The pod's network namespace path does not exist (the pod is gone)."""


def require(path: str) -> None:
    if not path or not os.path.exists(path):
        raise NetnsNotFound(path)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body inside the netns at `path`, always returning to the original one."""
    require(path)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(target)
    finally:
        os.close(original)


class NetnsRefused(CNIError):
    """CNI_NETNS names something that must not be treated as a pod's network namespace
    (the node's own, or a path that is not a network namespace): error 4, nothing touched."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            Code.INVALID_ENVIRONMENT,
            f"CNI_NETNS {path!r} {reason}",
            "environment variable CNI_NETNS: it must name the pod's own network namespace",
        )
