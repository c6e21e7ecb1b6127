"""CHECK: what ADD made still looks as ADD left it, and the address is still reserved.

Only this plugin's part of prevResult is checked: in a chain it also holds
what earlier plugins made, on their own interfaces.
"""

from __future__ import annotations

from ..core import results
from ..core.constants import pod_gateway
from ..core.errors import CNIError, Code
from ..dataplane import addressing, inspect
from ..dataplane.api import Dataplane
from ..ipam_client import Ipam
from .invocation import Invocation


def check(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> None:
    request = inv.request
    if inv.netconf.prev_result is None:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "invalid network config: prevResult: CHECK needs the result of the ADD to compare with",
            "prevResult",
        )
    prev = results.from_json(inv.netconf.prev_result)
    problems: list[str] = []
    try:
        ipam.check()
    except CNIError as err:
        problems.append(f"IPAM: {err.msg}")

    made = _made_by_add(prev, inv, problems)
    with inv.pod_netns_required():
        problems += dataplane.inspect(made)
    if problems:
        raise CNIError(
            Code.CHECK_FAILED,
            f"CHECK found {len(problems)} problem(s): {inspect.describe(problems)}",
            f"container {request.container_id}, interface {request.ifname}",
        )


def _made_by_add(prev: results.Result, inv: Invocation, problems: list[str]) -> inspect.Made:
    """This plugin's part of prevResult: its two interfaces, their addresses and routes."""
    request = inv.request
    pod_iface, pod_index = _pod_interface(prev, request.ifname)
    # ADD named the host end by the pod, or by the attachment when another held that name.
    host_names = inv.pod.host_names
    host_iface = next(
        (i for name in host_names for i in prev.interfaces if not i.sandbox and i.name == name),
        results.Interface(name=host_names[0]),
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
        pod_mtu=pod_iface.mtu if pod_iface.mtu is not None else inv.mtu,
        host_mtu=host_iface.mtu if host_iface.mtu is not None else inv.mtu,
        netns_path=request.netns_path,
        addresses=addresses,
        routes=addressing.pod_routes(addresses, ours),
        owner=inv.pod.owner,
    )


def _pod_interface(prev: results.Result, ifname: str) -> tuple[results.Interface | None, int]:
    for index, iface in enumerate(prev.interfaces):
        if iface.name == ifname and iface.sandbox:
            return iface, index
    return None, -1
