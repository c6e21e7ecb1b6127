"""The dataplane on Linux: veth pairs, addresses, routes and sysctls over rtnetlink."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from ..core.errors import CNIError, Code
from ..core.logs import log
from ..core.results import IPAddress, Route
from . import addressing, netlink, netns, sysctl, veth
from .api import Pod

if TYPE_CHECKING:
    from types import TracebackType

    from ..core.rtnl import Rtnl
    from .inspect import Made


class LinuxDataplane:
    """One request's dataplane; the node's handle opens on first use and closes with it."""

    def __init__(self) -> None:
        self._handles = ExitStack()
        self._host: Rtnl | None = None

    def __enter__(self) -> LinuxDataplane:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._handles.close()

    def _node(self) -> Rtnl:
        if self._host is None:
            self._host = self._handles.enter_context(netlink.host_handle())
        return self._host

    @contextmanager
    def setup(self, pod: Pod) -> Iterator[LinuxSetup]:
        host = self._node()
        with netlink.pod_handle(pod.netns_path) as pod_handle:
            # Under the attachment lock, an interface of ours here can only be an
            # earlier ADD's of this attachment (a retry, or a killed ADD): it is
            # rebuilt. Anything else of that name is refused before any change.
            if veth.remove_earlier_pair(host, pod_handle, pod.ifname, pod.host_name):
                log.info("ADD %s: replaced the pair %s/%s of an earlier ADD",
                         pod.container_id, pod.ifname, pod.host_name)
            else:
                veth.refuse_existing_pod_interface(pod_handle, pod.ifname, pod.netns)
            yield LinuxSetup(host, pod_handle, pod)

    def teardown(self, pod: Pod) -> bool:
        with netlink.pod_handle(pod.netns_path) as pod_handle:
            return veth.delete_pod_end(pod_handle, pod.ifname)

    def remove_orphan(self, host_name: str, addresses: Sequence[IPAddress]) -> bool:
        return veth.delete_host_end_routing(self._node(), host_name, addresses)

    def inspect(self, made: Made) -> list[str]:
        from . import inspect  # CHECK's alone: kept off ADD's and DEL's start-up

        host = self._node()
        with netlink.pod_handle(made.netns_path) as pod_handle:
            return inspect.problems(host, pod_handle, made)

    def links_routing(self, address: IPAddress) -> list[veth.LinkFacts]:
        try:
            return veth.links_routing(self._node(), address)
        except OSError as err:
            raise netlink.failure(f"reading the node's routes to {address}", err) from err


class LinuxSetup:
    """ADD's steps on one pod, through the node's handle and one bound to the pod."""

    def __init__(self, host: Rtnl, pod_handle: Rtnl, pod: Pod) -> None:
        self._host, self._pod, self.pod = host, pod_handle, pod
        self._found: tuple[int, int] | None = None

    def create_pair(self, mtu: int) -> None:
        veth.remove_stale_host_veth(self._host, self.pod.host_name)
        veth.create_pair(self._pod, self.pod.ifname, self.pod.host_name, mtu)
        self._found = None

    def delete_pair(self) -> None:
        veth.delete_host_end(self._host, self.pod.host_name)

    def _indexes(self) -> tuple[int, int]:
        """The two ends' indexes, looked up once after the pair is made."""
        if self._found is not None:
            return self._found
        host_index = netlink.link_index(self._host, self.pod.host_name)
        pod_index = netlink.link_index(self._pod, self.pod.ifname)
        if host_index is None or pod_index is None:
            raise CNIError(Code.DATAPLANE_FAILURE,
                           f"veth {self.pod.ifname}/{self.pod.host_name} vanished")
        self._found = host_index, pod_index
        return self._found

    def configure_links(self, ipv4: bool, ipv6: bool, allow_ip_forwarding: bool) -> None:
        host_index, pod_index = self._indexes()
        sysctl.configure_host_veth(self.pod.host_name, ipv4, ipv6)
        veth.set_up(self._host, host_index, self.pod.host_name)
        with netns.entered(self.pod.netns_path):
            sysctl.configure_pod(self.pod.ifname, ipv6, allow_ip_forwarding)
        veth.set_up(self._pod, pod_index, f"{self.pod.ifname} in the pod")

    def add_addresses(self, addresses: Sequence[IPAddress]) -> None:
        addressing.add_pod_addresses(self._pod, self._indexes()[1], addresses)

    def add_routes(self, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
        addressing.add_pod_routes(self._pod, self._indexes()[1], addresses, routes)

    def add_host_route(self, address: IPAddress) -> None:
        addressing.add_host_route(self._host, address, self._indexes()[0], self.pod.host_name)

    def pod_mac(self) -> str:
        return str(netlink.link_attrs(self._pod, self._indexes()[1])["address"])
