"""Building network configs and calling the plugin for a pod, as a runtime would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netns import Node, run_cni

BLOCK_V4 = "10.252.7.0/26"
BLOCK_V6 = "fd00:252:7::/122"


def netconf(data_dir: Path, version: str = "1.0.0", dual_stack: bool = False, **extra: Any) -> dict[str, Any]:
    ranges = [[{"subnet": BLOCK_V4}]]
    if dual_stack:
        ranges.append([{"subnet": BLOCK_V6}])
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "testnet",
        "type": "calico-py",
        "mtu_file_path": str(data_dir / "no-mtu-file"),
        "ipam": {"type": "calico-py-ipam", "ranges": ranges, "dataDir": str(data_dir)},
    }
    for key, value in extra.items():
        if key == "ipam":
            conf["ipam"].update(value)
        else:
            conf[key] = value
    return conf


@dataclass
class Pod:
    """One attachment: container ID, netns and the result of its ADD."""

    node: Node
    exe: str
    cni_path: str
    conf: dict[str, Any]
    netns: str
    container_id: str
    ifname: str = "eth0"
    args: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def env(self, command: str) -> dict[str, str]:
        return {
            "CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id, "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname, "CNI_PATH": self.cni_path, "CNI_ARGS": self.args,
        }

    def call(self, command: str, conf: dict[str, Any] | None = None, **env: str) -> tuple[int, Any, str]:
        return run_cni(self.node, self.exe, {**self.env(command), **env}, json.dumps(conf or self.conf))

    def add(self) -> dict[str, Any]:
        rc, out, err = self.call("ADD")
        assert rc == 0, (out, err)
        self.result = out
        return dict(out)

    def with_prev_result(self) -> dict[str, Any]:
        return {**self.conf, "prevResult": self.result}

    def check(self) -> tuple[int, Any, str]:
        return self.call("CHECK", self.with_prev_result())

    def delete(self, **env: str) -> tuple[int, Any, str]:
        return self.call("DEL", self.with_prev_result() if self.result else self.conf, **env)

    @property
    def host_veth(self) -> str:
        return str(self.result["interfaces"][0]["name"])

    def address(self, version: int = 4) -> str:
        for ip in self.result["ips"]:
            addr = ip["address"].split("/")[0]
            if (":" in addr) == (version == 6):
                return str(addr)
        raise AssertionError(f"no IPv{version} address in {self.result}")
