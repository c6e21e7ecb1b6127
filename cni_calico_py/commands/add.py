"""ADD: address from IPAM, veth pair, pod addresses and routes, node route."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from .. import ipam_client
from ..config import NetConf
from ..core import cancel, results
from ..core.constants import HOST_VETH_MAC
from ..core.errors import CNIError, Code
from ..core.logs import log
from ..core.request import Request
from ..dataplane import addressing, netlink, netns, sysctl, veth
from .common import host_veth_for, netns_missing, resolve_mtu


def add(request: Request, netconf: NetConf, raw: dict[str, Any]) -> results.Result:
    host_name = host_veth_for(request, netconf)
    mtu = resolve_mtu(netconf)
    try:
        with netlink.host_handle() as host, netlink.pod_handle(request.netns_path) as pod:
            # Under the attachment lock, an interface of ours here can only be an
            # earlier ADD's of this attachment (a retry, or a killed ADD): it is
            # rebuilt. Anything else of that name is refused before any change.
            if veth.remove_earlier_pair(host, pod, request.ifname, host_name):
                log.info("ADD %s: replaced the pair %s/%s of an earlier ADD",
                         request.container_id, request.ifname, host_name)
            else:
                veth.refuse_existing_pod_interface(pod, request.ifname, request.netns)
            return _attach(request, netconf, raw, host, pod, host_name, mtu)
    except netns.NetnsNotFound:
        raise netns_missing(request) from None


def _attach(
    request: Request, netconf: NetConf, raw: dict[str, Any],
    host: Any, pod: Any, host_name: str, mtu: int,
) -> results.Result:
    # Every step pushes its undo; an error anywhere unwinds them in reverse,
    # so a failed ADD leaves no veth, route or reservation behind.
    with ExitStack() as undo:
        allocated, release = ipam_client.reserve(request, raw, netconf.ipam.type)
        # Only what this ADD reserved: what the attachment held before is an earlier ADD's.
        undo.callback(_undo, "release the addresses this ADD reserved", release)
        if allocated is None or not allocated.ips:
            raise CNIError(Code.IPAM_FAILURE, f"IPAM plugin {netconf.ipam.type} returned no address")
        addresses = [ip.address.ip for ip in allocated.ips]
        has_v4 = any(a.version == 4 for a in addresses)
        has_v6 = any(a.version == 6 for a in addresses)

        veth.remove_stale_host_veth(host, host_name)
        veth.create_pair(pod, request.ifname, host_name, mtu)
        undo.callback(_undo, f"delete {host_name}", veth.delete_host_end, host, host_name)
        host_index = netlink.link_index(host, host_name)
        pod_index = netlink.link_index(pod, request.ifname)
        if host_index is None or pod_index is None:
            raise CNIError(Code.DATAPLANE_FAILURE, f"veth {request.ifname}/{host_name} vanished")

        sysctl.configure_host_veth(host_name, has_v4, has_v6)
        veth.set_up(host, host_index, host_name)
        with netns.entered(request.netns_path):
            sysctl.configure_pod(
                request.ifname, has_v6, netconf.container_settings.allow_ip_forwarding
            )
        veth.set_up(pod, pod_index, f"{request.ifname} in the pod")
        routes = addressing.pod_routes(addresses, allocated.routes)
        addressing.configure_pod(pod, pod_index, addresses, routes)
        for address in addresses:
            addressing.add_host_route(host, address, host_index, host_name)
        pod_mac = str(netlink.link_attrs(pod, pod_index)["address"])
        undo.pop_all()

    log.info("ADD %s: %s on %s", request.container_id, addresses, host_name)
    return _result(request, netconf, allocated, host_name, pod_mac, mtu, routes)


def _undo(step: str, func: Callable[..., Any], *args: Any) -> None:
    """Run one undo step; its own failure is logged, never hides the original error."""
    try:
        with cancel.suspended():
            func(*args)
    except Exception as err:
        log.error("rollback step %r failed: %s", step, err)


def _result(
    request: Request, netconf: NetConf, allocated: results.Result,
    host_name: str, pod_mac: str, mtu: int, routes: list[results.Route],
) -> results.Result:
    prev = results.from_json(netconf.prev_result) if netconf.prev_result else results.Result()
    first = len(prev.interfaces)
    interfaces = [
        *prev.interfaces,
        results.Interface(name=host_name, mac=HOST_VETH_MAC, mtu=mtu),
        results.Interface(name=request.ifname, mac=pod_mac, sandbox=request.netns, mtu=mtu),
    ]
    ips = [
        *prev.ips,
        *(
            results.IPConfig(address=_host_prefix(ip.address), interface=first + 1)
            for ip in allocated.ips
        ),
    ]
    dns = allocated.dns if not allocated.dns.is_empty() else prev.dns
    if netconf.dns:
        dns = results.DNS(
            nameservers=list(netconf.dns.get("nameservers") or []),
            domain=str(netconf.dns.get("domain") or ""),
            search=list(netconf.dns.get("search") or []),
            options=list(netconf.dns.get("options") or []),
        )
    return results.Result(interfaces=interfaces, ips=ips, routes=[*prev.routes, *routes], dns=dns)


def _host_prefix(address: results.IPInterface) -> results.IPInterface:
    """Calico narrows every pod address to a host prefix: routing is per address."""
    return ipaddress.ip_interface(f"{address.ip}/{address.max_prefixlen}")
