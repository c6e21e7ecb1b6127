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


# Calico's host-side settings (protocol, kind, key, value; the interface goes
# between kind and key): the node answers ARP/NDP for the pod's gateway.
HOST_SETTINGS: tuple[tuple[str, str, str, str], ...] = (("ipv6", "conf", "accept_ra", "0"),)
HOST_SETTINGS_V4 = (
    ("ipv4", "conf", "forwarding", "1"),
    ("ipv4", "conf", "proxy_arp", "1"),
    # The kernel's default delay (up to 0.8 s) stalls a pod's first packets.
    ("ipv4", "neigh", "proxy_delay", "0"),
    ("ipv4", "conf", "route_localnet", "1"),
)
HOST_SETTINGS_V6 = (
    ("ipv6", "conf", "disable_ipv6", "0"),
    ("ipv6", "conf", "accept_dad", "0"),
    ("ipv6", "conf", "proxy_ndp", "1"),
    ("ipv6", "conf", "forwarding", "1"),
)


def host_settings(ipv4: bool, ipv6: bool) -> list[tuple[str, str, str, str]]:
    return [*HOST_SETTINGS, *(HOST_SETTINGS_V4 if ipv4 else ()), *(HOST_SETTINGS_V6 if ipv6 else ())]


def configure_host_veth(ifname: str, ipv4: bool, ipv6: bool) -> None:
    for proto, kind, key, value in host_settings(ipv4, ipv6):
        write(value, proto, kind, ifname, key)


def restore_host_veth(ifname: str, ipv4: bool, ipv6: bool) -> list[str]:
    """Set again what differs from `configure_host_veth`'s settings; which ones did."""
    fixed = []
    for proto, kind, key, value in host_settings(ipv4, ipv6):
        try:
            current = read(proto, kind, ifname, key)
        except OSError:
            continue  # the interface went meanwhile
        if current != value:
            write(value, proto, kind, ifname, key)
            fixed.append(f"net.{proto}.{kind}.{ifname}.{key} was {current}, set to {value}")
    return fixed


def configure_pod(ifname: str, ipv6: bool, allow_ip_forwarding: bool) -> None:
    """Pod-side settings; the caller must be inside the pod's netns."""
    forwarding = 1 if allow_ip_forwarding else 0
    write(forwarding, "ipv4", "ip_forward")
    if ipv6:
        write(0, "ipv6", "conf", ifname, "disable_ipv6")
        # A duplicate address check would hold the address back for seconds.
        write(0, "ipv6", "conf", ifname, "accept_dad")
        write(forwarding, "ipv6", "conf", "all", "forwarding")
