"""CHECK: the pod and node still look as ADD left them, and the address is still reserved."""

from __future__ import annotations

from typing import Any

from .. import ipam_client, results
from ..config import NetConf
from ..dataplane import inspect, netlink, netns
from ..errors import CNIError, Code
from ..request import Request
from .common import host_veth_for, netns_missing


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

    pod_iface, pod_index = _pod_interface(prev, request)
    host_name = host_veth_for(request, netconf)
    host_iface = next(
        (i for i in prev.interfaces if not i.sandbox and i.name == host_name),
        results.Interface(name=host_name),
    )
    addresses = [
        ip.address.ip for ip in prev.ips if ip.interface is None or ip.interface == pod_index
    ]
    if pod_iface is None:
        problems.append(f"prevResult lists no interface {request.ifname} in {request.netns}")
        pod_iface = results.Interface(name=request.ifname, sandbox=request.netns)
    try:
        with netlink.host_handle() as host, netlink.pod_handle(request.netns_path) as pod:
            problems += inspect.pod_problems(pod, pod_iface, addresses, prev.routes)
            problems += inspect.host_problems(host, host_iface, addresses)
    except netns.NetnsNotFound:
        raise netns_missing(request) from None
    if problems:
        raise CNIError(
            Code.CHECK_FAILED,
            f"CHECK found {len(problems)} problem(s): {inspect.describe(problems)}",
            f"container {request.container_id}, interface {request.ifname}",
        )


def _pod_interface(prev: results.Result, request: Request) -> tuple[results.Interface | None, int]:
    for index, iface in enumerate(prev.interfaces):
        if iface.name == request.ifname and iface.sandbox:
            return iface, index
    return None, -1
