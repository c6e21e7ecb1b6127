"""One CNI invocation as the verbs see it: the request, its config and what they share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..config import NetConf
from ..core import results
from ..core.constants import DEFAULT_MTU
from ..core.errors import CNIError, Code
from ..core.logs import log
from ..core.request import Request
from ..dataplane import netns
from ..dataplane.api import Pod
from ..dataplane.naming import host_veth_name, owner_mark, spare_host_veth_name


@dataclass(frozen=True)
class Invocation:
    request: Request
    netconf: NetConf
    raw: dict[str, Any]  # the network config as given, for the IPAM

    @cached_property
    def host_veth(self) -> str:
        """The pod's Calico name for the host end (a second attachment of it takes its spare)."""
        request = self.request
        return host_veth_name(
            self.netconf.veth_prefix, request.pod_namespace, request.pod_name, request.container_id
        )

    @cached_property
    def mtu(self) -> int:
        """Config `mtu`, else the number the node keeps in its MTU file, else 1500."""
        return resolve_mtu(self.netconf)

    @cached_property
    def pod(self) -> Pod:
        request, network = self.request, self.netconf.name
        spare = spare_host_veth_name(self.netconf.veth_prefix, network, request.container_id,
                                     request.ifname)
        return Pod(container_id=request.container_id, netns=request.netns,
                   netns_path=request.netns_path, ifname=request.ifname,
                   host_names=(self.host_veth, spare),
                   owner=owner_mark(network, request.container_id, request.ifname))

    @cached_property
    def prev_result(self) -> results.Result | None:
        """An earlier plugin's result in a chain; none when the config has none (or an empty one)."""
        prev = self.netconf.prev_result
        return results.from_json(prev) if prev else None

    def configured_dns(self) -> results.DNS | None:
        """The config's own `dns`, which wins over what the IPAM returned."""
        dns = self.netconf.dns
        if not dns:
            return None
        return results.parse_dns(dict(dns), "dns")

    @contextmanager
    def pod_netns_required(self) -> Iterator[None]:
        """A pod netns found missing in the body is error 4, naming CNI_NETNS and the verb."""
        try:
            yield
        except netns.NetnsNotFound:
            request = self.request
            raise CNIError(
                Code.INVALID_ENVIRONMENT,
                f"CNI_NETNS {request.netns!r} does not exist",
                "environment variable CNI_NETNS: the pod's network namespace must exist for "
                f"{request.command}",
            ) from None


def resolve_mtu(netconf: NetConf) -> int:
    if netconf.mtu is not None:
        return netconf.mtu
    try:
        with open(netconf.mtu_file_path, encoding="ascii") as src:
            text = src.read().strip()
    except FileNotFoundError:
        return DEFAULT_MTU
    except OSError as err:
        log.warning("cannot read MTU file %s (%s); using %d", netconf.mtu_file_path, err, DEFAULT_MTU)
        return DEFAULT_MTU
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 68 <= value <= 65535:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"MTU file {netconf.mtu_file_path} holds {text!r}, expected a number from 68 to 65535",
            "mtu_file_path",
        )
    return value
