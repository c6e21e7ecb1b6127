"""The three things measured side by side, each on its own /26 and its own dataDir.

- agent:  the installed executables with the node agent running (the warm path);
- frozen: the installed PyInstaller executable (`make install` layout), cold;
- venv:   the same code run from the virtualenv's console script;
- ptp:    Debian's Go reference plugins, ptp + host-local.

A /26 holds 64 addresses. Our IPAM hands out all of them (as Calico's blocks
do); host-local is given the whole /26 as its range and a gateway outside it
(169.254.1.1, Calico's), so ptp can also fill the block with 64 pods.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path("/usr/lib/cni")
BLOCKS = {"frozen": "10.252.0.0/26", "venv": "10.252.0.64/26", "ptp": "10.252.0.128/26",
          "agent": "10.252.0.192/26"}
LABELS = {
    "agent": "calico-py (agent)",
    "frozen": "calico-py (PyInstaller)",
    "venv": "calico-py (venv)",
    "ptp": "ptp + host-local (Go)",
}
ORDER = ("agent", "frozen", "venv", "ptp")
BLOCK_SIZE = 64
GATEWAY = "169.254.1.1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Variant:
    key: str
    exe: str
    cni_path: str
    conf: dict[str, Any]
    store_dir: str
    extra_env: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return LABELS[self.key]

    @property
    def block(self) -> str:
        return BLOCKS[self.key]

    def stdin(self, prev_result: dict[str, Any] | None = None) -> bytes:
        conf = self.conf if prev_result is None else {**self.conf, "prevResult": prev_result}
        return json.dumps(conf).encode()

    def env(self, command: str, container_id: str, netns: str) -> dict[str, str]:
        # What a kubelet-era runtime sends; ptp ignores the K8S_ keys (IgnoreUnknown).
        return {
            "PATH": PATH,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container_id}",
            **dict(self.extra_env),
        }


def _whole_block_range(block: str) -> dict[str, str]:
    net = ipaddress.ip_network(block)
    return {"subnet": block, "rangeStart": str(net[0]), "rangeEnd": str(net[-1]), "gateway": GATEWAY}


def _ipam_section(ipam: str, block: str, data_dir: str) -> dict[str, Any]:
    if ipam == "host-local":
        return {"type": "host-local", "ranges": [[_whole_block_range(block)]], "dataDir": data_dir}
    return {"type": ipam, "subnet": block, "dataDir": data_dir}


def ours(key: str, bin_dir: Path, ipam: str, work: Path) -> Variant:
    data_dir = str(work / key)
    name = f"bench-{key}"
    conf = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "calico-py",
        "mtu_file_path": str(work / "no-mtu-file"),
        "ipam": _ipam_section(ipam, BLOCKS[key], data_dir),
    }
    # The cold path: an agent socket that does not exist, as on a node without
    # the agent, even if one runs on this machine. The agent variant names the
    # socket of the agent the benchmark starts in its node.
    socket = agent_socket(work) if key == "agent" else str(work / "no-agent.sock")
    return Variant(key, str(bin_dir / "calico-py"), f"{bin_dir}:{REFERENCE_DIR}", conf,
                   os.path.join(data_dir, name), (("CALICO_PY_AGENT_SOCKET", socket),))


def agent_socket(work: Path) -> str:
    return str(work / "agent.sock")


def ptp(work: Path) -> Variant:
    data_dir = str(work / "ptp")
    conf = {
        "cniVersion": "1.0.0",
        "name": "bench-ptp",
        "type": "ptp",
        "ipMasq": False,
        "ipam": _ipam_section("host-local", BLOCKS["ptp"], data_dir),
    }
    return Variant("ptp", str(REFERENCE_DIR / "ptp"), str(REFERENCE_DIR), conf,
                   os.path.join(data_dir, "bench-ptp"))


def venv_bin_dir() -> Path:
    """The virtualenv's bin directory: where this interpreter's console scripts are."""
    return Path(sys.executable).parent


def build_installed(repo: Path, work: Path) -> Path:
    """`make build` and `make install DESTDIR=<work>`; returns the directory holding calico-py."""
    dest = work / "installed"
    for target in (["build"], ["install", f"DESTDIR={dest}"]):
        proc = subprocess.run(["make", "-C", str(repo), *target, f"PYTHON={sys.executable}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"make {' '.join(target)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return dest / "opt" / "cni" / "bin"


def store_leftovers(variant: Variant) -> list[str]:
    """Reservations (or half-written files) left in the variant's IPAM store."""
    if not os.path.isdir(variant.store_dir):
        return []
    return sorted(
        name for name in os.listdir(variant.store_dir)
        if name != "lock" and not name.startswith("last_reserved_ip")
    )
