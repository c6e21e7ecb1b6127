"""What the cluster tests read back from the nodes' kernels, stores and the datastore."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from tests.netns import ip_json

from .install import Installed
from .node import KubeNode

CONFLIST = "/etc/cni/net.d/10-calico-py.conflist"


def routes(node: KubeNode, *args: str) -> list[dict[str, Any]]:
    return list(ip_json_path(node.netns, "-4", "route", "show", *args))


def ip_json_path(netns_path: str, *args: str) -> Any:
    return ip_json(netns_path.rsplit("/", 1)[1], *args)


def owned_blocks(node: KubeNode) -> list[ipaddress.IPv4Network]:
    """The blocks the node routes to a blackhole: those it owns."""
    return [ipaddress.IPv4Network(r["dst"]) for r in routes(node, "type", "blackhole")]


def pod_routes(node: KubeNode) -> dict[str, str]:
    """/32 routes to pods on this node: address -> host-side interface."""
    return {r["dst"]: r["dev"] for r in routes(node)
            if r.get("dev", "").startswith("cali") and r.get("scope") == "link"}


def cali_links(node: KubeNode) -> list[str]:
    return [link["ifname"] for link in ip_json_path(node.netns, "link", "show")
            if link["ifname"].startswith("cali")]


def store_addresses(node: KubeNode) -> list[str]:
    """The addresses the node's IPAM store holds, as the operator's command lists them."""
    proc = node.run("/opt/cni/bin/calico-py", "ipam", "show", "--json", "--conf", CONFLIST)
    shown = json.loads(proc.stdout)
    entries = shown if isinstance(shown, list) else shown.get("addresses", shown.get("entries", []))
    return [str(entry.get("ip") or entry.get("address")) for entry in entries]


def datastore_handles(kube: Installed) -> list[str]:
    """The IPAM handles the datastore holds (one per address a pod holds)."""
    if kube.datastore == "kubernetes":
        return [item["metadata"]["name"] for item in kube.cluster.get("ipamhandles")["items"]]
    assert kube.etcd is not None
    listed = kube.etcd.etcdctl("get", "--prefix", "--keys-only", "/calico-py/v1/handles/")
    return [line for line in listed.splitlines() if line.strip()]


def datastore_allocations(kube: Installed) -> list[str]:
    """Addresses the datastore's blocks say are allocated."""
    if kube.datastore != "kubernetes":
        return []
    found = []
    for block in kube.cluster.get("ipamblocks")["items"]:
        network = ipaddress.ip_network(block["spec"]["cidr"])
        for index, slot in enumerate(block["spec"].get("allocations") or []):
            if slot is not None:
                found.append(str(network[index]))
    return found


def block_owners(kube: Installed) -> dict[str, str]:
    """Block CIDR -> the node its affinity names, as the datastore holds them."""
    if kube.datastore == "kubernetes":
        blocks = [item["spec"] for item in kube.cluster.get("ipamblocks")["items"]]
    else:
        assert kube.etcd is not None
        listed = kube.etcd.etcdctl("get", "--prefix", "--print-value-only", "/calico-py/v1/blocks/")
        blocks = [json.loads(line) for line in listed.splitlines() if line.strip()]
    owners = {}
    for spec in blocks:
        owner = str(spec.get("affinity") or "").removeprefix("host:") or spec.get("node")
        if owner and spec.get("cidr"):
            owners[str(spec["cidr"])] = str(owner)
    return owners


def routed_everywhere(kube: Installed, node: KubeNode) -> bool:
    """Whether every other node routes `node`'s blocks and `node` routes theirs."""
    owners = block_owners(kube)
    mine = [block for block, owner in owners.items() if owner == node.name]
    if not mine:
        return False
    for other in kube.cluster.nodes.values():
        if other is not node and not all(block in {r["dst"] for r in routes(other)} for block in mine):
            return False
    theirs = [block for block, owner in owners.items() if owner != node.name]
    return all(block in {r["dst"] for r in routes(node)} for block in theirs)
