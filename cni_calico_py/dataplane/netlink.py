"""Netlink handles for the node and for one pod, and netlink errors as CNI errors."""

from __future__ import annotations

import errno
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import CNIError, Code
from .netns import entered

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute


def netlink_error_code(err: BaseException) -> int | None:
    return getattr(err, "code", None)


def is_exists(err: BaseException) -> bool:
    return netlink_error_code(err) == errno.EEXIST


def is_missing(err: BaseException) -> bool:
    return netlink_error_code(err) in (errno.ENODEV, errno.ESRCH, errno.ENOENT)


def failure(what: str, err: BaseException) -> CNIError:
    code = netlink_error_code(err)
    reason = os.strerror(code) if isinstance(code, int) else str(err)
    return CNIError(Code.DATAPLANE_FAILURE, f"{what}: {reason}")


def iproute_class() -> type[IPRoute]:
    """pyroute2's IPRoute, loaded without the rest of pyroute2.

    The package's __init__ imports every netlink family it knows (~200 ms
    here); a pod needs only rtnetlink. Registering the bare package first
    lets `pyroute2.iproute.linux` load on its own, in about half the time.
    Code that wants more of pyroute2 imports it through here as well.
    """
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations is not None:
            package = types.ModuleType("pyroute2")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__file__ = spec.origin
            sys.modules["pyroute2"] = package
    from pyroute2.iproute.linux import IPRoute as loaded

    iproute: type[IPRoute] = loaded
    return iproute


@contextmanager
def host_handle() -> Iterator[IPRoute]:
    handle = iproute_class()()
    try:
        yield handle
    finally:
        handle.close()


@contextmanager
def pod_handle(netns_path: str) -> Iterator[IPRoute]:
    """A handle bound to the pod's netns; raises NetnsNotFound if it is gone.

    A netlink socket belongs to the netns it was opened in, so it is opened
    inside the pod's. pyroute2's own `netns=` forks a helper to do that,
    ~10 ms against ~1 ms here.
    """
    with entered(netns_path):
        handle = iproute_class()()
    try:
        yield handle
    finally:
        handle.close()


def link_index(handle: IPRoute, ifname: str) -> int | None:
    found = handle.link_lookup(ifname=ifname)
    return found[0] if found else None


def link_attrs(handle: IPRoute, index: int) -> dict[str, Any]:
    msg = handle.link("get", index=index)[0]
    return {
        "ifname": msg.get("ifname"),
        "address": msg.get("address"),
        "mtu": msg.get("mtu"),
        "up": bool(msg["flags"] & 1),
    }
