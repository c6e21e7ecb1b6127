"""Netlink handles for the node and for one pod, and netlink errors as CNI errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.errors import CNIError, Code
from ..core.pyroute2_loader import load_pyroute2
from ..core.rtnl import IFF_UP, Rtnl
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
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror  # with the kernel's own explanation, where it gave one
    else:
        reason = os.strerror(code) if isinstance(code, int) else str(err)
    return CNIError(Code.DATAPLANE_FAILURE, f"{what}: {reason}")


def iproute_class() -> type[IPRoute]:
    """pyroute2's full IPRoute, for the node daemon (VXLAN, neighbours, FDB).

    A pod's requests go through `rtnl.Rtnl` instead: same codecs, no asyncio.
    """
    load_pyroute2()
    from pyroute2.iproute.linux import IPRoute as loaded

    iproute: type[IPRoute] = loaded
    return iproute


@contextmanager
def host_handle() -> Iterator[Rtnl]:
    with Rtnl() as handle:
        yield handle


@contextmanager
def pod_handle(netns_path: str) -> Iterator[Rtnl]:
    """A handle bound to the pod's netns: a netlink socket belongs to where it was made.

    The socket is opened inside the pod's netns (pyroute2's own `netns=`
    forks a helper to do that, ~10 ms against ~1 ms here). The path is
    checked as every pod netns is (`netns.open_checked`): NetnsNotFound when
    it is gone, NetnsRefused when it is not a pod's network namespace.
    """
    with entered(netns_path):
        handle = Rtnl()
    try:
        yield handle
    finally:
        handle.close()


def link_index(handle: Rtnl, ifname: str) -> int | None:
    return handle.link_index(ifname)


def link_attrs(handle: Rtnl, index: int) -> dict[str, Any]:
    msg = handle.link(index)
    return {
        "ifname": msg.get("ifname"),
        "address": msg.get("address"),
        "mtu": msg.get("mtu"),
        "up": bool(msg["flags"] & IFF_UP),
    }
