"""Netlink handles for the node and for one pod, and netlink errors as CNI errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import CNIError, Code
from .pyroute2_loader import load_pyroute2
from .rtnl import IFF_UP, Rtnl, opened_in

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


def pod_handle(netns_path: str) -> AbstractContextManager[Rtnl]:
    """A handle bound to the pod's netns; raises NetnsNotFound if it is gone.

    The socket is opened inside the pod's netns (pyroute2's own `netns=`
    forks a helper to do that, ~10 ms against ~1 ms here).
    """
    return opened_in(netns_path)


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
