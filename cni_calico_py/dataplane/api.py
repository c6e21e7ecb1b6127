"""The pod wiring as the verbs see it: setup, teardown, inspect.

As Calico's `Dataplane` (DoNetworking, CleanUpNamespace) keeps netlink out
of its plugin, this keeps it out of the verbs: `linux.LinuxDataplane` is the
one implementation, over the rtnetlink socket; unit tests use a fake. ADD
takes its steps one by one (`Setup`) so that it alone decides the order and
pushes each step's undo: the rollback is the verb's, whatever the dataplane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..core.results import IPAddress, Route
from .veth import LinkFacts

if TYPE_CHECKING:
    from .inspect import Made


@dataclass(frozen=True)
class Pod:
    """One attachment's two ends: CNI_IFNAME in the pod, the host veth on the node."""

    container_id: str
    netns: str  # CNI_NETNS as the runtime gave it, for messages
    netns_path: str  # where this process opens it
    ifname: str
    # The host end's name: the pod's Calico name, else (another attachment
    # holds that) the attachment's spare name (naming.py).
    host_names: tuple[str, str]
    owner: str  # the mark ADD leaves on the host end (naming.owner_mark)

    @property
    def host_name(self) -> str:
        """The name a pair takes unless another attachment holds it."""
        return self.host_names[0]


Held = Callable[[], Sequence[IPAddress]]  # the addresses the attachment holds, read when needed


class Setup(Protocol):
    """ADD's steps on one pod, while its handles are open. Removing the pair undoes them all:
    the addresses, routes and sysctls of a veth go with it."""

    def replace_earlier(self, held: Sequence[IPAddress]) -> None:
        """Remove this attachment's own earlier pair (a retry, or a killed ADD); refuse, changing
        nothing, when CNI_IFNAME in the pod is another attachment's. `held`: the addresses the
        attachment holds now, which an unmarked pair of its own routes."""

    def create_pair(self, mtu: int) -> None:
        """Create the pair under the first of the pod's host names no other attachment holds."""

    @property
    def host_name(self) -> str:
        """The host end's name, once created."""

    def delete_pair(self) -> None:
        """The undo of `create_pair` (and of every step after it): the pair it made, by index."""

    def configure_links(self, ipv4: bool, ipv6: bool, allow_ip_forwarding: bool) -> None:
        """The sysctls of both ends, both ends up, and the host end marked as the attachment's."""

    def add_addresses(self, addresses: Sequence[IPAddress]) -> None: ...

    def add_routes(self, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
        """The pod's link route to the node's gateway (IPv4), then `routes` through it."""

    def add_host_route(self, address: IPAddress) -> None:
        """The node's route to `address` through the host veth."""

    def pod_mac(self) -> str: ...


class Dataplane(Protocol):
    def setup(self, pod: Pod) -> AbstractContextManager[Setup]:
        """Open the pod, changing nothing. NetnsNotFound or NetnsRefused when the pod's netns is
        gone or not a pod's."""

    def teardown(self, pod: Pod, held: Held) -> bool:
        """Remove the pod end (its peer goes with it) if the pair is this attachment's: whether
        it did. NetnsNotFound or NetnsRefused as `setup`."""

    def remove_orphan(self, host_names: Sequence[str], owner: str, held: Held) -> str | None:
        """Remove the first host veth of `host_names` that is the attachment's marked `owner`
        (unmarked: that routes an address of `held`); the name removed, if any."""

    def inspect(self, made: Made) -> list[str]:
        """What differs from what ADD made, one line each. NetnsNotFound as `setup`."""

    def links_routing(self, address: IPAddress) -> list[LinkFacts]:
        """The node's interfaces routing `address` as a /32 (/128)."""
