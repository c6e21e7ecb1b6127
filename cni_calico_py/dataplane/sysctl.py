"""Per-interface sysctls, written through /proc/sys of the current netns."""

from __future__ import annotations

import errno
import os

from ..core.errors import CNIError, Code

PROC_SYS = "/proc/sys"


def path_of(*parts: str) -> str:
    # Interface names may hold dots, so parts are joined, never split on '.'.
    return os.path.join(PROC_SYS, "net", *parts)


def write(value: str | int, *parts: str) -> None:
    """Set one sysctl, or error 5 naming its path and the kernel's reason."""
    path = path_of(*parts)
    try:
        with open(path, "w", encoding="ascii") as out:
            out.write(str(value))
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.ENOENT:
            reason += " (the interface or the protocol is missing in this network namespace)"
        raise CNIError(Code.IO_FAILURE, f"cannot set sysctl {path} to {value}: {reason}",
                       path) from None


def read(*parts: str) -> str:
    with open(path_of(*parts), encoding="ascii") as src:
        return src.read().strip()


def configure_host_veth(ifname: str, ipv4: bool, ipv6: bool) -> None:
    """Calico's host-side settings: the node answers ARP/NDP for the pod's gateway."""
    write(0, "ipv6", "conf", ifname, "accept_ra")
    if ipv4:
        write(1, "ipv4", "conf", ifname, "forwarding")
        write(1, "ipv4", "conf", ifname, "proxy_arp")
        # The kernel's default delay (up to 0.8 s) stalls a pod's first packets.
        write(0, "ipv4", "neigh", ifname, "proxy_delay")
        write(1, "ipv4", "conf", ifname, "route_localnet")
    if ipv6:
        write(0, "ipv6", "conf", ifname, "disable_ipv6")
        write(0, "ipv6", "conf", ifname, "accept_dad")
        write(1, "ipv6", "conf", ifname, "proxy_ndp")
        write(1, "ipv6", "conf", ifname, "forwarding")


def configure_pod(ifname: str, ipv6: bool, allow_ip_forwarding: bool) -> None:
    """Pod-side settings; the caller must be inside the pod's netns."""
    forwarding = 1 if allow_ip_forwarding else 0
    write(forwarding, "ipv4", "ip_forward")
    if ipv6:
        write(0, "ipv6", "conf", ifname, "disable_ipv6")
        # A duplicate address check would hold the address back for seconds.
        write(0, "ipv6", "conf", ifname, "accept_dad")
        write(forwarding, "ipv6", "conf", "all", "forwarding")
