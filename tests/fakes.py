"""In-memory stand-ins for the IPAM and the dataplane the verbs see, for unit tests.

Both write what they do to one shared journal, so a test reads the order of
every step and every undo across the two; a step named in `fail_at` raises
instead of acting, as the kernel or the IPAM would.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cni_calico_py.commands.invocation import Invocation
from cni_calico_py.config import ContainerSettings, IpamSection, NetConf
from cni_calico_py.core import cancel
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import Request
from cni_calico_py.core.results import IPAddress, IPConfig, Result, Route
from cni_calico_py.dataplane import netns
from cni_calico_py.dataplane.api import Held, Pod
from cni_calico_py.dataplane.inspect import Made
from cni_calico_py.dataplane.veth import LinkFacts


def injected(step: str) -> CNIError:
    return CNIError(Code.DATAPLANE_FAILURE, f"injected failure at {step}")


@dataclass
class FakeIpam:
    journal: list[str]
    offer: list[str] = field(default_factory=lambda: ["10.0.0.5/26"])
    fail_at: str = ""
    # What the attachment held before this request (an earlier ADD's).
    held: list[IPAddress] = field(default_factory=list)
    stale: list[tuple[IPAddress, Any]] = field(default_factory=list)
    freed: list[IPAddress] = field(default_factory=list)

    def _step(self, name: str) -> None:
        if self.fail_at == name:
            raise CNIError(Code.IPAM_FAILURE, f"injected IPAM failure at {name}")
        self.journal.append(f"ipam {name}")

    def reserve(self) -> tuple[Result | None, Callable[[], None]]:
        self._step("reserve")
        fresh = [ipaddress.ip_interface(a) for a in self.offer]
        self.held += [a.ip for a in fresh if a.ip not in self.held]

        def undo() -> None:
            cancel.check("an undo step")  # runs on when the caller has gone
            self._step("undo reserve")
            self.held = [a for a in self.held if a not in {f.ip for f in fresh}]

        return Result(ips=[IPConfig(address=a) for a in fresh]), undo

    def release(self) -> None:
        self._step("release")
        self.held = []

    def addresses_of(self) -> list[IPAddress]:
        return list(self.held)

    def check(self) -> None:
        self._step("check")

    def gc(self, before_release: Callable[[IPAddress, Any], bool]) -> None:
        self._step("gc")
        self.freed += [a for a, record in self.stale if before_release(a, record)]

    def status(self) -> None:
        self._step("status")


@dataclass
class Kernel:
    """The links, addresses and routes the fake dataplane made."""

    host_links: dict[str, str] = field(default_factory=dict)  # host veth -> its pod end
    pod_links: dict[str, str] = field(default_factory=dict)  # pod end -> its host veth
    addresses: list[IPAddress] = field(default_factory=list)
    pod_routes: list[Route] = field(default_factory=list)
    host_routes: dict[IPAddress, str] = field(default_factory=dict)
    configured: bool = False
    owners: dict[str, str] = field(default_factory=dict)  # host veth -> its owner mark

    def empty(self) -> bool:
        return not (self.host_links or self.pod_links or self.addresses or self.pod_routes
                    or self.host_routes or self.configured)

    def add_pair(self, ifname: str, host_name: str) -> None:
        self.pod_links[ifname], self.host_links[host_name] = host_name, ifname

    def remove_pair(self, host_name: str) -> None:
        ifname = self.host_links.pop(host_name, None)
        self.owners.pop(host_name, None)
        if ifname is not None:
            self.pod_links.pop(ifname, None)
            self.addresses, self.pod_routes, self.configured = [], [], False
        self.host_routes = {a: h for a, h in self.host_routes.items() if h != host_name}


@dataclass
class FakeDataplane:
    journal: list[str]
    kernel: Kernel = field(default_factory=Kernel)
    fail_at: str = ""
    # What the step `fail_at` raises; by default a dataplane error naming it.
    fail_with: Exception | None = None
    # What opening the pod's netns raises: NetnsNotFound, NetnsRefused, or nothing.
    netns_error: Exception | None = None
    problems: list[str] = field(default_factory=list)
    inspected: list[Made] = field(default_factory=list)

    def _open(self) -> None:
        if self.netns_error is not None:
            raise self.netns_error

    @contextmanager
    def setup(self, pod: Pod) -> Iterator[FakeSetup]:
        self._open()
        yield FakeSetup(self, pod)

    def teardown(self, pod: Pod, held: Held) -> bool:
        self._open()
        host_name = self.kernel.pod_links.get(pod.ifname)
        mine = host_name is not None and self.kernel.owners.get(host_name) == pod.owner
        self.journal.append(f"teardown {pod.ifname}: "
                            + ("removed" if mine else "not its own" if host_name else "missing"))
        if mine and host_name is not None:
            self.kernel.remove_pair(host_name)
        return mine

    def remove_orphan(self, host_names: Sequence[str], owner: str, held: Held) -> str | None:
        for host_name in host_names:
            routes = any(self.kernel.host_routes.get(a) == host_name for a in held())
            marked = self.kernel.owners.get(host_name) == owner
            if (routes or marked) and host_name in self.kernel.host_links:
                self.journal.append(f"remove orphan {host_name}")
                self.kernel.remove_pair(host_name)
                return host_name
        return None

    def inspect(self, made: Made) -> list[str]:
        self._open()
        self.inspected.append(made)
        return list(self.problems)

    def links_routing(self, address: IPAddress) -> list[LinkFacts]:
        name = self.kernel.host_routes.get(address)
        if name is None:
            return []
        return [LinkFacts(index=7, name=name, kind="veth", peer_index=2, peer_netnsid=0)]


class FakeSetup:
    def __init__(self, dataplane: FakeDataplane, pod: Pod) -> None:
        self.dataplane, self.kernel, self.pod = dataplane, dataplane.kernel, pod

    def _step(self, name: str) -> None:
        if self.dataplane.fail_at == name:
            raise self.dataplane.fail_with or injected(name)
        self.dataplane.journal.append(name)

    def replace_earlier(self, held: Sequence[IPAddress]) -> None:
        host_name = self.kernel.pod_links.get(self.pod.ifname)
        if host_name is None:
            return
        if self.kernel.owners.get(host_name) != self.pod.owner:
            raise CNIError(Code.DATAPLANE_FAILURE, f"interface {self.pod.ifname} already exists")
        self.dataplane.journal.append("replace earlier pair")
        self.kernel.remove_pair(host_name)

    def create_pair(self, mtu: int) -> None:
        self._step("create_pair")
        self.kernel.add_pair(self.pod.ifname, self.pod.host_name)
        self.kernel.owners[self.pod.host_name] = self.pod.owner

    @property
    def host_name(self) -> str:
        return self.pod.host_name

    def delete_pair(self) -> None:
        self.dataplane.journal.append("delete_pair")
        self.kernel.remove_pair(self.pod.host_name)

    def configure_links(self, ipv4: bool, ipv6: bool, allow_ip_forwarding: bool) -> None:
        self._step("configure_links")
        self.kernel.configured = True

    def add_addresses(self, addresses: Sequence[IPAddress]) -> None:
        self._step("add_addresses")
        self.kernel.addresses += addresses

    def add_routes(self, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
        self._step("add_routes")
        self.kernel.pod_routes += routes

    def add_host_route(self, address: IPAddress) -> None:
        self._step(f"add_host_route {address}")
        self.kernel.host_routes[address] = self.pod.host_name

    def pod_mac(self) -> str:
        self._step("pod_mac")
        return "0a:58:0a:00:00:05"


def gone(path: str = "/var/run/netns/gone") -> Exception:
    return netns.NetnsNotFound(path)


def refused(path: str = "/proc/self/ns/net") -> Exception:
    return netns.NetnsRefused(path, "is the node's own network namespace")


def invocation(command: str = "ADD", netns_path: str = "/var/run/netns/pod", mtu: int = 1450,
               dns: dict[str, Any] | None = None, prev: dict[str, Any] | None = None,
               container_id: str = "c1") -> Invocation:
    request = Request(command=command, container_id=container_id, netns=netns_path, ifname="eth0",
                      args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web"})
    netconf = NetConf(
        cni_version="1.0.0", name="net", type="calico-py", ipam=IpamSection("calico-py-ipam"),
        mtu=mtu, mtu_file_path="/nonexistent/mtu", veth_prefix="cali", log_level="info",
        log_file_path=None, container_settings=ContainerSettings(), nodename=None, dns=dns,
        prev_result=prev,
    )
    return Invocation(request, netconf, {})
