"""ADD: address from IPAM, veth pair, pod addresses and routes, node route."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from ..core import attachment_lock, cancel, results
from ..core.constants import HOST_VETH_MAC
from ..core.errors import CNIError, Code
from ..core.logs import log
from ..dataplane import addressing
from ..dataplane.api import Dataplane, Setup
from ..ipam_client import Ipam
from .invocation import Invocation


def add(inv: Invocation, ipam: Ipam, dataplane: Dataplane) -> results.Result:
    mtu = inv.mtu
    with inv.pod_netns_required(), dataplane.setup(inv.pod) as setup:
        allocated, routes, pod_mac = _attach(inv, ipam, setup, mtu)
        host_name = setup.host_name
    log.info("ADD %s: %s on %s", inv.request.container_id,
             [ip.address.ip for ip in allocated.ips], host_name)
    return _result(inv, allocated, pod_mac, mtu, routes, host_name)


def _attach(
    inv: Invocation, ipam: Ipam, setup: Setup, mtu: int,
) -> tuple[results.Result, list[results.Route], str]:
    # Every step pushes its undo; an error anywhere unwinds them in reverse,
    # so a failed ADD leaves no veth, route or reservation behind.
    with ExitStack() as undo:
        # The store first: a retry that cannot reserve (the store busy or read-only)
        # fails before it touches the pod's working pair.
        allocated, release = ipam.reserve()
        # Only what this ADD reserved: what the attachment held before is an earlier ADD's.
        undo.callback(_undo_release, release)
        if allocated is None or not allocated.ips:
            raise CNIError(Code.IPAM_FAILURE,
                           f"IPAM plugin {inv.netconf.ipam.type} returned no address")
        addresses = [ip.address.ip for ip in allocated.ips]

        # The store lock's wait is where a pulled lock file (its directory removed
        # meanwhile) lets another request of the attachment in: stop before wiring.
        attachment_lock.confirm("wiring the pod")
        setup.replace_earlier(addresses)
        setup.create_pair(mtu)
        # Deleting the pair takes its addresses, routes and sysctls with it.
        undo.callback(_undo, f"delete {setup.host_name}", setup.delete_pair)
        setup.configure_links(
            ipv4=any(a.version == 4 for a in addresses),
            ipv6=any(a.version == 6 for a in addresses),
            allow_ip_forwarding=inv.netconf.container_settings.allow_ip_forwarding,
        )
        setup.add_addresses(addresses)
        routes = addressing.pod_routes(addresses, allocated.routes)
        setup.add_routes(addresses, routes)
        for address in addresses:
            setup.add_host_route(address)
        pod_mac = setup.pod_mac()
        undo.pop_all()
    return allocated, routes, pod_mac


def _undo_release(release: Callable[[], None]) -> None:
    """Release what this ADD reserved, unless another request of the attachment may have run
    beside this one: what it answered with may be these very addresses. The runtime's DEL
    after this failed ADD releases them then."""
    if not attachment_lock.intact():
        log.error("rollback keeps the addresses this ADD reserved: its attachment lock was "
                  "removed while held, and another request of the attachment may use them")
        return
    _undo("release the addresses this ADD reserved", release)


def _undo(step: str, func: Callable[..., Any], *args: Any) -> None:
    """Run one undo step; its own failure is logged, never hides the original error."""
    try:
        with cancel.suspended():
            func(*args)
    except Exception as err:
        log.error("rollback step %r failed: %s", step, err)


def _result(
    inv: Invocation, allocated: results.Result, pod_mac: str, mtu: int,
    routes: list[results.Route], host_name: str,
) -> results.Result:
    prev = inv.prev_result or results.Result()
    first = len(prev.interfaces)
    interfaces = [
        *prev.interfaces,
        results.Interface(name=host_name, mac=HOST_VETH_MAC, mtu=mtu),
        results.Interface(name=inv.request.ifname, mac=pod_mac, sandbox=inv.request.netns, mtu=mtu),
    ]
    ips = [
        *prev.ips,
        *(
            results.IPConfig(address=_host_prefix(ip.address), interface=first + 1)
            for ip in allocated.ips
        ),
    ]
    dns = inv.configured_dns() or (allocated.dns if not allocated.dns.is_empty() else prev.dns)
    return results.Result(interfaces=interfaces, ips=ips, routes=[*prev.routes, *routes], dns=dns)


def _host_prefix(address: results.IPInterface) -> results.IPInterface:
    """Calico narrows every pod address to a host prefix: routing is per address."""
    return ipaddress.ip_interface(f"{address.ip}/{address.max_prefixlen}")
