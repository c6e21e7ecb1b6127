"""CHECK: what ADD made still looks as ADD left it, and the address is still reserved.

Only this plugin's part of prevResult is checked: in a chain it also holds
what earlier plugins made, on their own interfaces.
"""

from __future__ import annotations

from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..core import results
from ..core.constants import pod_gateway
from ..core.errors import CNIError, Code
from ..core.request import Request
from ..dataplane import addressing, inspect, netlink, netns
from .common import host_veth_for, netns_missing, resolve_mtu


def check(request: Request, netconf: NetConf, raw: dict[str, Any]) -> None:
    if netconf.prev_result is None:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "invalid network config: prevResult: CHECK needs the result of the ADD to compare with",
            "prevResult",
        )
    prev = results.from_json(netconf.prev_result)
    problems: list[str] = []
    try:
        ipam_client.call("CHECK", request, raw, netconf.ipam.type)
    except CNIError as err:
        problems.append(f"IPAM: {err.msg}")

    made = _made_by_add(prev, request, netconf, problems)
    try:
        with netlink.host_handle() as host, netlink.pod_handle(request.netns_path) as pod:
            problems += inspect.problems(host, pod, made)
    except netns.NetnsNotFound:
        raise netns_missing(request) from None
    if problems:
        raise CNIError(
            Code.CHECK_FAILED,
            f"CHECK found {len(problems)} problem(s): {inspect.describe(problems)}",
            f"container {request.container_id}, interface {request.ifname}",
        )


def _made_by_add(
    prev: results.Result, request: Request, netconf: NetConf, problems: list[str],
) -> inspect.Made:
    """This plugin's part of prevResult: its two interfaces, their addresses and routes."""
    pod_iface, pod_index = _pod_interface(prev, request)
    host_name = host_veth_for(request, netconf)
    host_iface = next(
        (i for i in prev.interfaces if not i.sandbox and i.name == host_name),
        results.Interface(name=host_name),
    )
    if pod_iface is None:
        problems.append(f"prevResult lists no interface {request.ifname} in {request.netns}")
        pod_iface = results.Interface(name=request.ifname, sandbox=request.netns)
    # An address without an interface index can only be ours when no one else's
    # interface is listed.
    alone = all(i in (pod_iface, host_iface) for i in prev.interfaces)
    addresses = [
        ip.address.ip for ip in prev.ips
        if (ip.interface == pod_index and pod_index >= 0) or (ip.interface is None and alone)
    ]
    # ADD routes every pod route through the node's gateway; the other routes
    # in prevResult belong to other plugins of the chain.
    ours = [r for r in prev.routes if r.gw == pod_gateway(r.dst.version)]
    return inspect.Made(
        pod=pod_iface,
        host=host_iface,
        pod_mtu=pod_iface.mtu if pod_iface.mtu is not None else resolve_mtu(netconf),
        host_mtu=host_iface.mtu if host_iface.mtu is not None else resolve_mtu(netconf),
        netns_path=request.netns_path,
        addresses=addresses,
        routes=addressing.pod_routes(addresses, ours),
    )


def _pod_interface(prev: results.Result, request: Request) -> tuple[results.Interface | None, int]:
    for index, iface in enumerate(prev.interfaces):
        if iface.name == request.ifname and iface.sandbox:
            return iface, index
    return None, -1
