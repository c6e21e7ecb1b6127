"""The pod wiring as the verbs see it: setup, teardown, inspect.

As Calico's `Dataplane` (DoNetworking, CleanUpNamespace) keeps netlink out
of its plugin, this keeps it out of the verbs: `linux.LinuxDataplane` is the
one implementation, over the rtnetlink socket; unit tests use a fake. ADD
takes its steps one by one (`Setup`) so that it alone decides the order and
pushes each step's undo: the rollback is the verb's, whatever the dataplane.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    host_name: str


class Setup(Protocol):
    """ADD's steps on one pod, while its handles are open. Removing the pair undoes them all:
    the addresses, routes and sysctls of a veth go with it."""

    def create_pair(self, mtu: int) -> None:
        """Replace a stale host veth of the same name, then create the pair."""

    def delete_pair(self) -> None:
        """The undo of `create_pair` (and of every step after it)."""

    def configure_links(self, ipv4: bool, ipv6: bool, allow_ip_forwarding: bool) -> None:
        """The sysctls of both ends, and both ends up."""

    def add_addresses(self, addresses: Sequence[IPAddress]) -> None: ...

    def add_routes(self, addresses: Sequence[IPAddress], routes: Sequence[Route]) -> None:
        """The pod's link route to the node's gateway (IPv4), then `routes` through it."""

    def add_host_route(self, address: IPAddress) -> None:
        """The node's route to `address` through the host veth."""

    def pod_mac(self) -> str: ...


class Dataplane(Protocol):
    def setup(self, pod: Pod) -> AbstractContextManager[Setup]:
        """Open the pod; rebuild this attachment's own earlier pair, refuse any other
        interface of that name before any change. NetnsNotFound or NetnsRefused when
        the pod's netns is gone or not a pod's."""

    def teardown(self, pod: Pod) -> bool:
        """Remove the pod end (its peer goes with it): whether it was there.
        NetnsNotFound or NetnsRefused as `setup`."""

    def remove_orphan(self, host_name: str, addresses: Sequence[IPAddress]) -> bool:
        """Remove host veth `host_name` if it routes one of `addresses`: whether it did."""

    def inspect(self, made: Made) -> list[str]:
        """What differs from what ADD made, one line each. NetnsNotFound as `setup`."""

    def links_routing(self, address: IPAddress) -> list[LinkFacts]:
        """The node's interfaces routing `address` as a /32 (/128)."""
