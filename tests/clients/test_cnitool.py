"""Upstream cnitool (libcni 1.3, spec 1.1.0) against the installed plugin.

cnitool is built from the Go module proxy by scripts/go-tools.sh into a cache
outside the repository (only the first run builds it). It runs in a test
node's namespace and names each attachment `cnitool-<hash of the netns path>`.
It always caches results under /var/lib/cni/results (it has no cache-dir
option), so every test uses a network name of its own and removes its files.

What cnitool does for GC: it sends DEL for every attachment of the network
it has cached, then GC with no `cni.dev/valid-attachments` at all. The plugin
refuses a GC without that list (error 7) rather than free every reservation;
a runtime's list, written into the config as libcni would inject it, is
honoured. cnitool prints a plugin's error message but exits 1 for any error,
so the error codes are read from what the plugin wrote, through a recording
wrapper in CNI_PATH.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Node, agent_status, ip_json

from .helpers import (
    CNI_RESULT_CACHE,
    IPAM_TYPE,
    REFERENCE_PLUGINS,
    agent_env,
    conflist,
    go_tool,
    ping,
    require,
    reservations,
    run,
    write_json,
)

# Test-only blocks: nothing on these machines routes 10.253.65.64/26 or .128/26.
BLOCK = "10.253.65.64/26"
ONE_ADDRESS = "10.253.65.128"  # the STATUS test's range: a block of one address
GATEWAY = "169.254.1.1"


@pytest.fixture(scope="session")
def cnitool() -> Path:
    """cnitool, built once per machine (20-30 s) by scripts/go-tools.sh."""
    return go_tool("cnitool")


def container_id(netns: str) -> str:
    """The container ID cnitool gives an attachment (cnitool/cmd/root.go)."""
    return "cnitool-" + hashlib.sha512(os.path.abspath(netns).encode()).hexdigest()[:20]


@dataclass
class Cnitool:
    exe: Path
    node: Node
    network: str
    conf_dir: Path
    cni_path: str

    def __call__(self, verb: str, netns: str, check: bool = True,
                 conf_dir: Path | None = None, cni_path: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        env = agent_env(self.node.agent_socket)
        for inherited in ("CNI_ARGS", "CAP_ARGS", "CNI_IFNAME"):
            env.pop(inherited, None)
        env["NETCONFPATH"] = str(conf_dir or self.conf_dir)
        env["CNI_PATH"] = cni_path or self.cni_path
        return run([require("nsenter", "util-linux"), f"--net={self.node.path}", str(self.exe),
                    verb, self.network, netns], check=check, env=env)

    def add(self, netns: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self("add", netns).stdout)
        return result

    def cached(self, netns: str) -> Path:
        return CNI_RESULT_CACHE / f"{self.network}-{container_id(netns)}-eth0"

    def forget(self) -> None:
        for path in CNI_RESULT_CACHE.glob(f"{self.network}-*"):
            path.unlink(missing_ok=True)


@pytest.fixture
def tool(cnitool: Path, node: Node, installed_bin: Path, tmp_path: Path) -> Iterator[Cnitool]:
    network = f"calico-py-cnitool-{uuid.uuid4().hex[:6]}"
    cni_path = str(installed_bin)
    if IPAM_TYPE != "calico-py-ipam":
        cni_path += f":{REFERENCE_PLUGINS}"
    made = Cnitool(cnitool, node, network, tmp_path / "net.d", cni_path)
    try:
        yield made
    finally:
        made.forget()


def write_conf(tool: Cnitool, tmp_path: Path, subnet: str = BLOCK, conf_dir: Path | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    conf = conflist(tool.network, subnet, tmp_path / "ipam", tmp_path / "cni.log",
                    version="1.1.0")
    conf["plugins"][0].update(extra or {})
    write_json((conf_dir or tool.conf_dir) / "10-calico-py.conflist", conf)
    return conf


def recording_bin(tool: Cnitool, tmp_path: Path) -> tuple[str, Path]:
    """A CNI_PATH whose calico-py hands each request on and notes what came back:
    a line per call, the exit status, a tab, and stdout on one line."""
    directory, record = tmp_path / "recording-bin", tmp_path / "replies"
    directory.mkdir()
    real = Path(tool.cni_path.split(":")[0]) / "calico-py"
    wrapper = directory / "calico-py"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'out=$("{real}"); rc=$?\n'
        f'printf "%s\\t%s\\n" "$rc" "$(printf "%s" "$out" | tr -d "\\n")" >>"{record}"\n'
        'printf "%s\\n" "$out"\n'
        'exit "$rc"\n')
    wrapper.chmod(0o755)
    return f"{directory}:{tool.cni_path}", record


def last_reply(record: Path) -> tuple[int, Any]:
    """The exit status and the parsed stdout of the plugin's last call through the wrapper."""
    status, _, out = record.read_text().splitlines()[-1].partition("\t")
    return int(status), json.loads(out) if out.strip() else None


def pod_address(result: dict[str, Any], netns: str) -> tuple[str, str]:
    """(the pod's address, its host veth) from a 1.1.0 ADD result."""
    assert result["cniVersion"] == "1.1.0", result
    (ip,) = result["ips"]
    host, pod = result["interfaces"]
    assert pod == {**pod, "name": "eth0", "sandbox": netns, "mtu": 1500}, result
    assert result["interfaces"][ip["interface"]] is pod, result
    assert host["name"].startswith("cali") and "sandbox" not in host, result
    address = ipaddress.ip_interface(ip["address"])
    assert address.network.prefixlen == 32, result
    assert address.ip in ipaddress.ip_network(BLOCK), result
    assert {"dst": "0.0.0.0/0", "gw": GATEWAY} in result["routes"], result
    return str(address.ip), host["name"]


def node_routes(node: Node) -> dict[str, str]:
    """The node's routes into the test block: destination -> device (or route type)."""
    block = ipaddress.IPv4Network(BLOCK)
    return {r["dst"]: r.get("dev", r.get("type", "")) for r in node.routes()
            if r["dst"] != "default" and ipaddress.IPv4Network(r["dst"], strict=False).subnet_of(block)}


def veths(node: Node) -> list[str]:
    return sorted(link["ifname"] for link in node.links() if link["ifname"].startswith("cali"))


def test_add_check_gc_del(tool: Cnitool, node: Node, installed_bin: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "ipam"
    write_conf(tool, tmp_path)
    pods = {role: node.add_pod() for role in ("kept", "cached", "stale")}
    added = {role: pod_address(tool.add(netns), netns) for role, netns in pods.items()}
    addresses = {role: address for role, (address, _) in added.items()}
    assert len(set(addresses.values())) == 3
    for role, (address, veth) in added.items():
        assert node_routes(node)[address] == veth, f"{role}: {node.routes()}"
        assert tool.cached(pods[role]).exists(), f"cnitool cached no result for {role}"
    (pod_ip,) = ip_json(node.pods[0], "-4", "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert (pod_ip["local"], pod_ip["prefixlen"]) == (addresses["kept"], 32)
    ping(addresses["kept"], netns=node.path)
    ping(node.address, netns=pods["cached"])
    for netns in pods.values():
        tool("check", netns)

    # A runtime that lost track of "stale": only the plugin's store still has it.
    tool.cached(pods["stale"]).unlink()
    # "kept" stays out of cnitool's cache too, or its GC would DEL it; it comes back below.
    kept_cache = tool.cached(pods["kept"]).read_bytes()
    tool.cached(pods["kept"]).unlink()

    cni_path, record = recording_bin(tool, tmp_path)
    refused = tool("gc", node.path, check=False, cni_path=cni_path)
    # libcni DELs what it has cached, then the plugin refuses a GC without the list.
    assert refused.returncode == 1 and "cni.dev/valid-attachments" in refused.stderr, refused
    status, reply = last_reply(record)
    assert status != 0 and reply["code"] == 7, reply
    assert sorted(reservations(data_dir, tool.network)) == sorted(
        (addresses["kept"], addresses["stale"]))
    assert sorted(node_routes(node)) == sorted((addresses["kept"], addresses["stale"], BLOCK))
    assert veths(node) == sorted((added["kept"][1], added["stale"][1]))

    # The list a runtime passes: libcni injects it into each plugin's config.
    gc_dir = tmp_path / "net.d-gc"
    write_conf(tool, tmp_path, conf_dir=gc_dir, extra={
        "cni.dev/valid-attachments": [{"containerID": container_id(pods["kept"]), "ifname": "eth0"}],
    })
    tool("gc", node.path, conf_dir=gc_dir)
    assert reservations(data_dir, tool.network) == [addresses["kept"]]
    assert node_routes(node) == {addresses["kept"]: added["kept"][1], BLOCK: "blackhole"}
    assert veths(node) == [added["kept"][1]]
    assert [a["ifname"] for a in ip_json(node.pods[2], "link", "show")] == ["lo"]
    ping(addresses["kept"], netns=node.path)

    tool.cached(pods["kept"]).write_bytes(kept_cache)
    tool("check", pods["kept"])
    tool("del", pods["kept"])
    tool("del", pods["kept"])  # cache gone: DEL without prevResult is still a success
    assert not tool.cached(pods["kept"]).exists()
    assert reservations(data_dir, tool.network) == []
    assert node_routes(node) == {}, "routes (or the block's blackhole) left after DEL"
    assert veths(node) == []
    if node.agent_socket:
        status = agent_status(str(installed_bin / "calico-py"), node.agent_socket)
        assert status is not None
        served = status["served"]
        assert served.get("ADD") == 3 and served.get("GC") == 2, served
        assert served.get("DEL") == 3 and served.get("CHECK") == 4, served


def test_status(tool: Cnitool, node: Node, tmp_path: Path) -> None:
    data_dir = tmp_path / "ipam"
    write_conf(tool, tmp_path, subnet=f"{ONE_ADDRESS}/26")
    conf_path = tool.conf_dir / "10-calico-py.conflist"
    conf = json.loads(conf_path.read_text())
    conf["plugins"][0]["ipam"].update(rangeStart=ONE_ADDRESS, rangeEnd=ONE_ADDRESS)
    write_json(conf_path, conf)
    cni_path, record = recording_bin(tool, tmp_path)
    tool("status", node.path, cni_path=cni_path)
    assert last_reply(record) == (0, None)

    pod = node.add_pod()
    result = json.loads(tool("add", pod, cni_path=cni_path).stdout)
    assert result["ips"][0]["address"] == f"{ONE_ADDRESS}/32", result
    full = tool("status", node.path, check=False, cni_path=cni_path)
    assert full.returncode == 1 and "no address can be handed out" in full.stderr, full
    status, reply = last_reply(record)
    assert status != 0 and reply["code"] == 50, reply
    tool("del", pod)
    tool("status", node.path, cni_path=cni_path)
    assert last_reply(record) == (0, None)

    # A store no reservation can be written to, even by root: an immutable directory.
    store = data_dir / tool.network
    chattr = require("chattr", "e2fsprogs")
    run([chattr, "+i", str(store)])
    try:
        stuck = tool("status", node.path, check=False, cni_path=cni_path)
        assert stuck.returncode == 1 and "cannot be written" in stuck.stderr, stuck
        status, reply = last_reply(record)
        assert status != 0 and reply["code"] == 50, reply
    finally:
        run([chattr, "-i", str(store)], check=False)
    tool("status", node.path)
    assert reservations(data_dir, tool.network) == []
