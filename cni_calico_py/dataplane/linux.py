"""The dataplane on Linux: veth pairs, addresses, routes and sysctls over rtnetlink."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from ..core.errors import CNIError, Code
from ..core.logs import log
from ..core.results import IPAddress, Route
from . import addressing, netlink, netns, ownership, sysctl, veth
from .api import Held, Pod

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
            yield LinuxSetup(host, pod_handle, pod)

    def teardown(self, pod: Pod, held: Held) -> bool:
        host = self._node()
        with netlink.pod_handle(pod.netns_path) as pod_handle:
            pod_index = netlink.link_index(pod_handle, pod.ifname)
            if pod_index is None:
                return False
            pair = veth.pod_end_pair(host, pod_handle, pod_index, pod.host_names)
            if pair is None or not veth.is_ours(host, pair, pod.owner, held, unfinished=True):
                log.warning("DEL %s: %s in %s is %s; left as it is", pod.container_id, pod.ifname,
                            pod.netns, _not_ours(pair, pod.owner))
                return False
            return veth.delete_link(pod_handle, pod_index, f"{pod.ifname} in the pod")

    def remove_orphan(self, host_names: Sequence[str], owner: str, held: Held) -> str | None:
        host = self._node()
        for name in host_names:
            facts = _veth_named(host, name)
            if facts is not None and veth.is_ours(host, facts, owner, held, unfinished=False) \
                    and veth.delete_if_named(host, facts.index, name, f"host interface {name}"):
                return name
        return None

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


def _veth_named(host: Rtnl, name: str) -> veth.LinkFacts | None:
    index = netlink.link_index(host, name)
    facts = veth.link_facts(host, index) if index is not None else None
    return facts if facts is not None and facts.kind == "veth" else None


def _not_ours(pair: veth.LinkFacts | None, owner: str) -> str:
    """Why a pod interface is not the attachment's, for messages."""
    if pair is None:
        return "not a veth paired with this network's host interface of the pod"
    found = ownership.whose(pair.alias, pair.up, owner)
    if found is ownership.Whose.UNMARKED:
        return (f"paired with {pair.name}, which routes no address this attachment holds: "
                "another container's")
    return f"paired with {pair.name}, {found.value}"


class LinuxSetup:
    """ADD's steps on one pod, through the node's handle and one bound to the pod."""

    def __init__(self, host: Rtnl, pod_handle: Rtnl, pod: Pod) -> None:
        self._host, self._pod, self.pod = host, pod_handle, pod
        self._held: Sequence[IPAddress] = ()
        # The pair this ADD made: host index, pod index, host name.
        self._made: tuple[int, int, str] | None = None

    def replace_earlier(self, held: Sequence[IPAddress]) -> None:
        self._held = held
        pod, ifname = self.pod, self.pod.ifname
        pod_index = netlink.link_index(self._pod, ifname)
        if pod_index is None:
            return
        pair = veth.pod_end_pair(self._host, self._pod, pod_index, pod.host_names)
        if pair is None or not veth.is_ours(self._host, pair, pod.owner, lambda: held,
                                            unfinished=True):
            raise veth.refuse_pod_interface(ifname, pod.netns, f"is {_not_ours(pair, pod.owner)}")
        # Under the attachment lock, a pair of ours can only be an earlier ADD's of
        # this attachment (a retry, or a killed ADD): it is rebuilt.
        veth.delete_link(self._pod, pod_index, f"{ifname} in the pod")
        log.info("ADD %s: replaced the pair %s/%s of an earlier ADD", pod.container_id, ifname,
                 pair.name)

    def create_pair(self, mtu: int) -> None:
        taken: list[str] = []
        for name in self.pod.host_names:
            if self._clear(name):
                try:
                    veth.create_pair(self._pod, self.pod.ifname, name, mtu)
                except veth.NameTaken:
                    if netlink.link_index(self._pod, self.pod.ifname) is not None:
                        raise
                    # Another attachment's ADD took the name since the look.
                else:
                    self._made = self._look_up(name)
                    return
            taken.append(name)
        raise CNIError(
            Code.DATAPLANE_FAILURE,
            f"the host interface names {' and '.join(taken)} of container "
            f"{self.pod.container_id} are held by other attachments",
            "each belongs to another container of the pod, or to another interface of it; "
            "DEL those first",
        )

    def _clear(self, name: str) -> bool:
        """Whether `name` is free for this ADD: unused, or this attachment's own leftover
        (removed here). Another attachment's pair of that name, even unfinished, is left."""
        index = netlink.link_index(self._host, name)
        facts = veth.link_facts(self._host, index) if index is not None else None
        if facts is None:
            return True
        if facts.kind != "veth" or not veth.is_ours(self._host, facts, self.pod.owner, lambda: self._held,
                            unfinished=False):
            return False
        veth.delete_if_named(self._host, facts.index, name, f"stale host interface {name}")
        log.info("ADD %s: removed its stale host interface %s", self.pod.container_id, name)
        return True

    def _look_up(self, name: str) -> tuple[int, int, str]:
        """The pair just made, by index: undo and later steps act on these links alone."""
        pod_index = netlink.link_index(self._pod, self.pod.ifname)
        peer = self._pod.link(pod_index).get("link") if pod_index is not None else None
        if pod_index is None or peer is None:
            raise CNIError(Code.DATAPLANE_FAILURE, f"veth {self.pod.ifname}/{name} vanished")
        return int(peer), pod_index, name

    @property
    def host_name(self) -> str:
        return self._made[2] if self._made is not None else self.pod.host_name

    def delete_pair(self) -> None:
        if self._made is not None:
            host_index, _, name = self._made
            veth.delete_if_named(self._host, host_index, name, f"host interface {name}")

    def _indexes(self) -> tuple[int, int]:
        if self._made is None:
            raise CNIError(Code.DATAPLANE_FAILURE, f"veth {self.pod.ifname} was never made")
        return self._made[0], self._made[1]

    def configure_links(self, ipv4: bool, ipv6: bool, allow_ip_forwarding: bool) -> None:
        host_index, pod_index = self._indexes()
        sysctl.configure_host_veth(self.host_name, ipv4, ipv6)
        # Up and marked in one message: an unmarked pair that is up is never this version's.
        veth.set_up(self._host, host_index, self.host_name, alias=self.pod.owner)
        with netns.entered(self.pod.netns_path):
            sysctl.configure_pod(self.pod.ifname, ipv6, allow_ip_forwarding)
        veth.set_up(self._pod, pod_index, f"{self.pod.ifname} in the pod")

    def add_addresses(self, addresses: Sequence[IPAddress]) -> None:
        addressing.add_pod_addresses(self._pod, self._indexes()[1], addresses)

    def add_routes(self, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
        addressing.add_pod_routes(self._pod, self._indexes()[1], addresses, routes)

    def add_host_route(self, address: IPAddress) -> None:
        addressing.add_host_route(self._host, address, self._indexes()[0], self.host_name)

    def pod_mac(self) -> str:
        return str(netlink.link_attrs(self._pod, self._indexes()[1])["address"])
