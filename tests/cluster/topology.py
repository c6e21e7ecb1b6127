"""A multi-node cluster made of network namespaces, with a real etcd.

An underlay namespace holds a bridge that every node hangs off (10.<o>.0.0/24);
a router namespace can add a second subnet (10.<o>.1.0/24) for nodes that are
one hop away. Nothing is connected to the machine's own namespace, so every
packet stays between namespaces the test made, and everything is removed on
exit, also when the test fails.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import NETNS_DIR, TEST_PREFIX, add_netns, del_netns, ip_json, sh, unique_name

# The history etcd keeps: the last 1000 revisions (README, "Several nodes").
COMPACTION = ("--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000")
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
# etcd refuses to start on architectures it does not officially support unless told to.
_ETCD_ARCHES = {"x86_64", "aarch64", "ppc64le"}
_GOARCH = {"armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386"}


@dataclass
class ClusterNode:
    name: str
    netns: str
    ip: str
    cidr: str
    index: int
    # Read by tests.netns.run_cni: None runs the plugin cold.
    agent_socket: str | None = None

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*args, check=check, netns=self.name)


@dataclass
class Underlay:
    """The shared L2 segment; its namespace is also every same-subnet node's gateway."""

    prefix: str
    octet: int
    nodes: list[ClusterNode] = field(default_factory=list)
    router: str | None = None

    @property
    def name(self) -> str:
        return f"{self.prefix}-ul"

    @property
    def netns(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    @property
    def gateway(self) -> str:
        return f"10.{self.octet}.0.1"

    @property
    def remote_gateway(self) -> str:
        return f"10.{self.octet}.1.1"

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*args, check=check, netns=self.name)

    def add_node(self, index: int, name_suffix: str | None = None) -> ClusterNode:
        """A node on the underlay's own subnet, 10.<o>.0.<10+index>."""
        return self._add_node(index, name_suffix, self.name, "br0", 0, self.gateway)

    def add_remote_node(self, index: int, name_suffix: str | None = None) -> ClusterNode:
        """A node on 10.<o>.1.0/24, reached from the underlay through the router."""
        router = self._router()
        return self._add_node(index, name_suffix, router, "br1", 1, self.remote_gateway)

    def _add_node(self, index: int, name_suffix: str | None, peer_ns: str, bridge: str,
                  subnet: int, gateway: str) -> ClusterNode:
        # The veth peer name and the address are derived from the index, so it must be unique.
        if not 1 <= index <= 240 or any(n.index == index for n in self.nodes):
            raise ValueError(f"node index {index} is out of range or already used")
        name = f"{self.prefix}-{name_suffix or f'n{index}'}"
        ip = f"10.{self.octet}.{subnet}.{10 + index}"
        node = ClusterNode(name=name, netns=os.path.join(NETNS_DIR, name), ip=ip,
                           cidr=f"{ip}/24", index=index)
        # Recorded before it exists so that a half-made node is still removed.
        self.nodes.append(node)
        add_netns(name)
        peer = f"v{index}"
        sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", peer_ns)
        sh("ip", "-n", peer_ns, "link", "set", peer, "master", bridge, "up")
        sh("ip", "-n", name, "addr", "add", node.cidr, "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        sh("ip", "-n", name, "route", "add", "default", "via", gateway)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=name)
        return node

    def _router(self) -> str:
        if self.router is not None:
            return self.router
        self.router = router = f"{self.prefix}-rt"
        add_netns(router)
        sh("ip", "-n", router, "link", "add", "eth0", "type", "veth", "peer", "name", "rt",
           "netns", self.name)
        sh("ip", "-n", self.name, "link", "set", "rt", "master", "br0", "up")
        sh("ip", "-n", router, "addr", "add", f"10.{self.octet}.0.254/24", "dev", "eth0")
        sh("ip", "-n", router, "link", "set", "eth0", "up")
        # A bridge rather than a single link so that any number of remote nodes fit behind it.
        sh("ip", "-n", router, "link", "add", "br1", "type", "bridge")
        sh("ip", "-n", router, "addr", "add", f"{self.remote_gateway}/24", "dev", "br1")
        sh("ip", "-n", router, "link", "set", "br1", "up")
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=router)
        # Same-subnet nodes send everything to the underlay, which hands the remote subnet on.
        sh("ip", "-n", self.name, "route", "add", f"10.{self.octet}.1.0/24", "via", f"10.{self.octet}.0.254")
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.name)
        return router

    def remove(self) -> None:
        names = [n.name for n in self.nodes] + ([self.router] if self.router else []) + [self.name]
        for name in names:
            _kill_processes(name)
            del_netns(name)


def _kill_processes(netns: str) -> None:
    # A process left inside would keep the namespace, and its addresses, alive after `ip netns del`.
    pids = sh("ip", "netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _octets_in_use() -> set[int]:
    """The subnets of other tests' underlays; they could not clash, but distinct ones read better in logs."""
    used: set[int] = set()
    listing = sh("ip", "-j", "netns", "list", check=False).stdout
    for entry in json.loads(listing) if listing.strip() else []:
        name = entry["name"]
        if not (name.startswith(TEST_PREFIX) and name.endswith("-ul")):
            continue
        try:
            addrs = ip_json(name, "-4", "addr", "show", "dev", "br0")
        except subprocess.CalledProcessError:
            continue  # gone, or not made yet
        for link in addrs:
            for addr in link.get("addr_info", []):
                used.add(int(addr["local"].split(".")[1]))
    return used


def _free_octet() -> int:
    used = _octets_in_use()
    return random.choice([o for o in range(100, 200) if o not in used] or list(range(100, 200)))


@contextmanager
def underlay(subnet_octet: int | None = None) -> Iterator[Underlay]:
    """An underlay namespace with bridge br0 at 10.<o>.0.1/24; nodes are added through it."""
    ul = Underlay(prefix=unique_name("ul").removesuffix("-ul"),
                  octet=subnet_octet if subnet_octet is not None else _free_octet())
    try:
        add_netns(ul.name)
        sh("ip", "-n", ul.name, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", ul.name, "addr", "add", f"{ul.gateway}/24", "dev", "br0")
        sh("ip", "-n", ul.name, "link", "set", "br0", "up")
        yield ul
    finally:
        ul.remove()


class Etcd:
    """etcd inside the underlay namespace, one per underlay.

    The namespace's loopback is private to it, so the fixed ports never clash between tests.
    """

    def __init__(self, underlay: Underlay, data_dir: Path) -> None:
        self.underlay = underlay
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "etcd.log"
        self.endpoint = f"http://{underlay.gateway}:{ETCD_CLIENT_PORT}"
        self.local_endpoint = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 20) -> None:
        if self.pid is not None:
            return
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        env = dict(os.environ)
        machine = platform.machine()
        if machine not in _ETCD_ARCHES:
            env["ETCD_UNSUPPORTED_ARCH"] = _GOARCH.get(machine, machine)
        # A file, not a pipe: nobody reads etcd's chatter while the test runs, and a full pipe blocks it.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.underlay.name, "etcd", "--name", "cpt",
                 "--data-dir", str(self.data_dir),
                 "--listen-client-urls", f"{self.endpoint},{self.local_endpoint}",
                 "--advertise-client-urls", self.endpoint,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"cpt={peer}", *COMPACTION],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + timeout
        # Checked after the probe too: a second etcd in the same underlay exits on the
        # taken port while the first one answers the probe.
        while not (self._healthy() and self.proc.poll() is None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become healthy:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def etcdctl(self, *args: str) -> str:
        proc = sh("etcdctl", "--endpoints", self.local_endpoint, *args,
                  netns=self.underlay.name, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _healthy(self) -> bool:
        return sh("etcdctl", "--endpoints", self.local_endpoint, "--dial-timeout", "1s",
                  "--command-timeout", "2s", "endpoint", "health",
                  netns=self.underlay.name, check=False).returncode == 0


@contextmanager
def etcd(underlay: Underlay) -> Iterator[Etcd]:
    """A started etcd on the underlay; stopped and its data removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{underlay.prefix}-etcd-"))
    server = Etcd(underlay, tmp / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
