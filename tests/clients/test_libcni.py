"""libcni (what cnitool and the kubelet-era runtimes use) against the installed plugin.

The project's Go client runs in a test node's namespace, so nothing here
touches the machine's own routes. libcni caches each ADD's result and hands
it to CHECK and DEL as prevResult.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Node, agent_status, ip_json

from .helpers import (
    IPAM_TYPE,
    REFERENCE_PLUGINS,
    agent_env,
    conflist,
    in_netns,
    ping,
    reservations,
    write_json,
)

BLOCK = "10.253.65.0/26"
NETWORK = "calico-py-libcni"
GATEWAY = "169.254.1.1"


class Libcni:
    def __init__(self, client: Path, conf: Path, path: str, cache: Path, node: Node):
        self.client, self.conf, self.path, self.cache, self.node = (
            client, conf, path, cache, node)

    def __call__(self, verb: str, netns: str, container_id: str, check: bool = True) -> Any:
        proc = in_netns(
            self.node.name, str(self.client), "-conflist", str(self.conf),
            "-path", self.path, "-cache-dir", str(self.cache), "-netns", netns,
            "-id", container_id,
            "-args", f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container_id}",
            verb, check=check, env=agent_env(self.node.agent_socket),
        )
        if not check:
            return proc
        return json.loads(proc.stdout) if proc.stdout.strip() else None


def _pod_address(result: dict[str, Any]) -> str:
    (ip,) = result["ips"]
    interface = ip.get("interface")
    assert interface is not None and result["interfaces"][interface]["sandbox"]
    network = ipaddress.ip_interface(ip["address"])
    assert network.network.prefixlen == 32, ip
    assert network.ip in ipaddress.ip_network(BLOCK)
    return str(network.ip)


def _check_pod(netns_name: str, address: str) -> None:
    addrs = ip_json(netns_name, "-4", "addr", "show", "dev", "eth0")
    assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]] == [(address, 32)]
    routes = ip_json(netns_name, "-4", "route", "show")
    default = [r for r in routes if r["dst"] == "default"]
    assert default and default[0]["gateway"] == GATEWAY and default[0]["dev"] == "eth0", routes
    assert any(r["dst"] == GATEWAY and r.get("scope") == "link" for r in routes), routes


def _node_routes(node: Node) -> list[dict[str, Any]]:
    block = ipaddress.IPv4Network(BLOCK)
    return [r for r in node.routes() if r["dst"] != "default"
            and ipaddress.IPv4Network(r["dst"], strict=False).subnet_of(block)]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_add_check_del(
    version: str, node: Node, libcni_client: Path, installed_bin: Path, tmp_path: Path,
) -> None:
    data_dir = tmp_path / "ipam"
    conf = write_json(tmp_path / "net.conflist",
                      conflist(NETWORK, BLOCK, data_dir, tmp_path / "cni.log", version=version))
    path = str(installed_bin)
    if IPAM_TYPE != "calico-py-ipam":
        path += f":{REFERENCE_PLUGINS}"
    cni = Libcni(libcni_client, conf, path, tmp_path / "cache", node)
    cni("validate", "", "")
    pods = {f"pod{i}": node.add_pod() for i in range(2)}
    addresses: dict[str, str] = {}
    for cid, netns in pods.items():
        result = cni("add", netns, cid)
        assert result["cniVersion"] == version
        addresses[cid] = _pod_address(result)
    assert len(set(addresses.values())) == 2

    for (cid, address), netns_name in zip(addresses.items(), node.pods, strict=True):
        _check_pod(netns_name, address)
        route = [r for r in _node_routes(node) if r["dst"] == address]
        assert route and route[0]["dev"].startswith("cali") and route[0]["scope"] == "link", \
            f"{cid}: {node.routes()}"
    ping(addresses["pod0"], netns=node.path)
    ping(addresses["pod1"], netns=pods["pod0"])
    ping(node.address, netns=pods["pod1"])

    if version != "0.3.1":  # libcni has no CHECK before 0.4.0
        for cid, netns in pods.items():
            cni("check", netns, cid)
    assert sorted(reservations(data_dir, NETWORK)) == sorted(addresses.values())

    for cid, netns in pods.items():
        cni("del", netns, cid)
        # Again, with libcni's cache gone: DEL must be idempotent.
        cni("del", netns, cid)
    assert reservations(data_dir, NETWORK) == []
    assert _node_routes(node) == [], "routes (or the block's blackhole) left after DEL"
    assert [link["ifname"] for link in node.links() if link["ifname"].startswith("cali")] == []
    for netns_name in node.pods:
        assert [a["ifname"] for a in ip_json(netns_name, "link", "show")] == ["lo"]
    if node.agent_socket:
        # The installed executable handed every request to the node's agent.
        status = agent_status(str(installed_bin / "calico-py"), node.agent_socket)
        assert status is not None
        served = status["served"]
        assert served.get("ADD") == 2 and served.get("DEL") == 4, served
        assert served.get("CHECK", 0) == (0 if version == "0.3.1" else 2), served
