"""The benchmark's node: a network namespace of its own, with an uplink, and pods.

The benchmark process enters the node namespace once (setns) and spawns the
plugins from there, so every plugin starts the same way and pays no
`ip netns exec`. Everything is named with a per-run prefix and removed at the
end, also after a failure or Ctrl-C; the machine's own namespace is never
changed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NETNS_DIR = "/var/run/netns"
PREFIX = "cpb"
CLONE_NEWNET = 0x40000000
UPLINK_NET = "10.251.0"


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _ip_batch(lines: list[str]) -> None:
    """Several `ip` commands in one process (global options such as -n are not allowed)."""
    proc = subprocess.run(["ip", "-batch", "-"], input="".join(f"{line}\n" for line in lines),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip -batch: {proc.stderr.strip()[:500]}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


@dataclass
class Node:
    run_id: str
    pods: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.run_id}-node"

    @property
    def upstream(self) -> str:
        return f"{PREFIX}{self.run_id}-up"

    def make_pods(self, count: int) -> list[str]:
        """`count` more, empty pod namespaces; returns their paths.

        Only the plugin under test configures them: a runtime would run the
        loopback plugin separately, so lo stays as the kernel made it.
        """
        names = [f"{PREFIX}{self.run_id}-p{len(self.pods) + i}" for i in range(count)]
        self.pods.extend(names)
        _ip_batch([f"netns add {n}" for n in names])
        return [netns_path(n) for n in names]


def link_names() -> list[str]:
    """Names of the links of the node (the process is inside it)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


def routes_in(subnet: str) -> list[str]:
    """Routes of the node that fall inside `subnet` (the process is inside the node)."""
    out = subprocess.run(["ip", "-4", "route", "show", "root", subnet],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def _setup(node: Node) -> None:
    # A real node's uplink: an address and a default route that is not a pod's veth.
    _ip_batch([f"netns add {node.name}", f"netns add {node.upstream}"])
    for netns, args in (
        (node.name, "link set lo up"),
        (node.upstream, "link set lo up"),
        (node.name, f"link add eth0 type veth peer name uplink netns {node.upstream}"),
        (node.name, f"addr add {UPLINK_NET}.2/24 dev eth0"),
        (node.name, "link set eth0 up"),
        (node.upstream, f"addr add {UPLINK_NET}.1/24 dev uplink"),
        (node.upstream, "link set uplink up"),
        (node.name, f"route add default via {UPLINK_NET}.1"),
    ):
        _ip("-n", netns, *args.split())


def _teardown(node: Node) -> None:
    names = [*node.pods, node.name, node.upstream]
    # A second Ctrl-C must not cut the cleanup short: it is held until the end.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        # -force: go on after a namespace that is already gone.
        subprocess.run(["ip", "-force", "-batch", "-"],
                       input="".join(f"netns del {n}\n" for n in names), capture_output=True, text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextmanager
def entered_node() -> Iterator[Node]:
    """Make the node, move this process into it, and undo both at the end."""
    node = Node(run_id=uuid.uuid4().hex[:6])
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setup(node)
        target = os.open(netns_path(node.name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            # /proc/sys/net now shows the node's own settings.
            for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
                with open(path, "w", encoding="ascii") as out:
                    out.write("1")
            yield node
        finally:
            _setns(original)
    finally:
        os.close(original)
        _teardown(node)
