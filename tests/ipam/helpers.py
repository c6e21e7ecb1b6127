"""Shared helpers of the IPAM tests: configs, environments, reading the store back."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.netns import Node

SUBNET = "192.168.97.0/26"
BLOCK = ipaddress.ip_network(SUBNET)
ALL_ADDRESSES = {str(a) for a in BLOCK}
NETWORK = "ipamtest"


def netconf(data_dir: Path | str, version: str = "1.1.0", **ipam: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"type": "calico-py-ipam", "subnet": SUBNET, "dataDir": str(data_dir)}
    section.update(ipam)
    return {"cniVersion": version, "name": NETWORK, "ipam": section}


def cni_env(command: str, container_id: str = "", ifname: str = "eth0", netns: str = "",
            args: str = "", path: str = "/opt/cni/bin") -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_PATH": path}
    if container_id:
        env["CNI_CONTAINERID"] = container_id
    if ifname and command in ("ADD", "DEL", "CHECK"):
        env["CNI_IFNAME"] = ifname
    if netns:
        env["CNI_NETNS"] = netns
    if args:
        env["CNI_ARGS"] = args
    return env


def store_dir(conf: dict[str, Any]) -> Path:
    directory: Path = Path(conf["ipam"]["dataDir"]) / conf["name"]
    return directory


def records(conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The store's record files as address -> parsed JSON (fails on a file that is not JSON)."""
    found: dict[str, dict[str, Any]] = {}
    directory = store_dir(conf)
    if not directory.exists():
        return found
    for name in os.listdir(directory):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            continue
        found[name] = json.loads((directory / name).read_text())
    return found


def stray_files(conf: dict[str, Any]) -> list[str]:
    directory = store_dir(conf)
    return sorted(n for n in os.listdir(directory) if n.startswith(".")) if directory.exists() else []


def blackholes(node: Node) -> list[dict[str, Any]]:
    return [r for r in node.routes() if r.get("type") == "blackhole"]


def in_parallel(jobs: Iterable[Callable[[], Any]], workers: int = 64) -> list[Any]:
    jobs = list(jobs)
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


def address_of(output: Any) -> str:
    assert isinstance(output, dict) and "ips" in output, output
    return str(output["ips"][0]["address"]).split("/")[0]
