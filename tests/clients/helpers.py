"""Shared pieces of the real-client tests: tools, network configs, host state.

containerd, ctr and podman make their pods' namespaces themselves and run the
plugin in the machine's own network namespace, so its host-side veths and
routes land there. `HostState` records what the machine had before a test and
removes whatever the test left (veths, routes in the test block, the block's
blackhole, runtime netns), so a failing test never leaves the machine changed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NETNS_DIR = Path("/run/netns")
# Where libcni-based runtimes (go-cni, podman) cache results: /var/lib/cni/results/<network>-<id>-<ifname>.
CNI_RESULT_CACHE = Path("/var/lib/cni/results")
VETH_PREFIX = "cali"
LOG_LEVEL = "debug"
# Triage aid: CALICO_PY_E2E_IPAM=host-local runs the clients with Debian's
# host-local (same store layout) instead of calico-py-ipam.
IPAM_TYPE = os.environ.get("CALICO_PY_E2E_IPAM", "calico-py-ipam")
REFERENCE_PLUGINS = Path("/usr/lib/cni")
# The plugin hands requests to the node agent listening here ("off": never).
AGENT_SOCKET_ENV = "CALICO_PY_AGENT_SOCKET"


def require(program: str, package: str) -> str:
    """The program's path, or fail naming the Debian package that provides it."""
    path = shutil.which(program, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{program} is not installed: apt-get install {package} "
                    "(scripts/install-client-deps.sh installs everything these tests need)")
    return path


GO_TOOLS = Path(__file__).resolve().parents[2] / "scripts" / "go-tools.sh"


def go_tool(program: str) -> Path:
    """An upstream Go program built by scripts/go-tools.sh (cached: only a fresh machine builds)."""
    proc = subprocess.run(["bash", str(GO_TOOLS), program], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"scripts/go-tools.sh {program} failed:\n{proc.stderr[-3000:]}")
    path = Path(proc.stdout.strip())
    if not path.is_file():
        pytest.fail(f"scripts/go-tools.sh {program} printed {str(path)!r}, which is no file")
    return path


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=env, input=input_text)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def in_netns(name: str, *args: str, check: bool = True, timeout: float = 60,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in a named network namespace (`ip netns exec`)."""
    return run(["ip", "netns", "exec", name, *args], check=check, timeout=timeout, env=env)


def agent_env(socket: str | None) -> dict[str, str]:
    """The environment a client runs the plugin with: through the node's agent, or cold.

    Cold is explicit ("off"): an agent someone runs on the machine's default
    socket must not serve a test's requests.
    """
    return {**os.environ, AGENT_SOCKET_ENV: socket or "off"}


def conflist(name: str, subnet: str, data_dir: Path, log_file: Path,
             version: str = "1.0.0", **plugin: Any) -> dict[str, Any]:
    """A one-plugin network config list for a test block."""
    return {
        "cniVersion": version,
        "name": name,
        "plugins": [{
            "type": "calico-py",
            "log_level": LOG_LEVEL,
            "log_file_path": str(log_file),
            "mtu": 1500,
            "ipam": {"type": IPAM_TYPE, "subnet": subnet, "dataDir": str(data_dir)},
            **plugin,
        }],
    }


def with_portmap(conf: dict[str, Any]) -> dict[str, Any]:
    """`conf` chained with the reference portmap, as Calico's own conflist ships it."""
    return {**conf, "plugins": [*conf["plugins"],
                                {"type": "portmap", "snat": True,
                                 "capabilities": {"portMappings": True}}]}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def reservations(data_dir: Path, network: str) -> list[str]:
    """Addresses the IPAM store still holds for `network`."""
    store = data_dir / network
    if not store.is_dir():
        return []
    held = []
    for entry in store.iterdir():
        try:
            ipaddress.ip_address(entry.name)
        except ValueError:
            continue
        held.append(entry.name)
    return sorted(held)


def ping(address: str, netns: str | None = None, count: int = 2) -> None:
    """Ping from the given netns path (or the caller's), failing with ping's output."""
    ping_path = require("ping", "iputils-ping")
    prefix = [require("nsenter", "util-linux"), f"--net={netns}"] if netns else []
    run([*prefix, ping_path, "-c", str(count), "-i", "0.2", "-W", "2", address], timeout=30)


def _links() -> list[dict[str, Any]]:
    return list(json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]"))


def _routes(family: str) -> list[dict[str, Any]]:
    return list(json.loads(run(["ip", "-j", family, "route", "show", "table", "all"]).stdout
                           or "[]"))


def _in_block(dst: str, block: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if dst in ("default", ""):
        return False
    try:
        net = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return False
    return net.version == block.version and net.subnet_of(block)  # type: ignore[arg-type]


@dataclass
class HostState:
    """What the machine's namespace held before a test, to clean up what it gained."""

    blocks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    networks: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)

    @classmethod
    def snapshot(cls, blocks: Sequence[str], networks: Sequence[str] = ()) -> HostState:
        state = cls([ipaddress.ip_network(b) for b in blocks], list(networks))
        state.links = {link["ifname"] for link in _links()}
        state.netns = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        for block in state.blocks:
            stale = [r for r in state.block_routes() if _in_block(r.get("dst", ""), block)]
            if stale:
                pytest.fail(f"the machine already has routes in the test block {block}: {stale}; "
                            "another run or program uses it")
        return state

    def new_veths(self) -> list[str]:
        return sorted(link["ifname"] for link in _links()
                      if link["ifname"].startswith(VETH_PREFIX) and link["ifname"] not in self.links)

    def block_routes(self) -> list[dict[str, Any]]:
        """Routes into a test block, or through a veth the test made."""
        found = []
        new = set(self.new_veths())
        for family in ("-4", "-6"):
            for route in _routes(family):
                dst = route.get("dst", "")
                if route.get("dev") in new or any(_in_block(dst, b) for b in self.blocks):
                    found.append(route)
        return found

    def new_netns(self) -> list[str]:
        now = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        return sorted(now - self.netns)

    def leftovers(self) -> list[str]:
        problems = [f"veth {name}" for name in self.new_veths()]
        problems += [f"route {_describe(r)}" for r in self.block_routes()]
        return problems

    def clean(self) -> list[str]:
        """Remove what the test left in the machine's namespace; returns what that was."""
        left = self.leftovers()
        for route in self.block_routes():
            args = ["ip", "-6" if ":" in route.get("dst", "") else "-4", "route", "del"]
            if route.get("type") and route["type"] != "unicast":
                args.append(route["type"])
            args.append(route.get("dst", ""))
            if route.get("table") not in (None, "main"):
                args += ["table", str(route["table"])]
            run(args, check=False)
        for name in self.new_veths():
            run(["ip", "link", "del", name], check=False)
        for name in self.new_netns():
            if name.startswith(("cni-", "netns-")):
                run(["ip", "netns", "del", name], check=False)
        for network in self.networks:
            for cached in CNI_RESULT_CACHE.glob(f"{network}-*"):
                cached.unlink(missing_ok=True)
        return left


@contextmanager
def guarded_host(block: str, network: str) -> Iterator[HostState]:
    """Snapshot the machine's namespace; afterwards remove what the test left.

    A test that passed but left a veth or a route fails here: the plugin's DEL
    should have removed them.
    """
    state = HostState.snapshot([block], [network])
    try:
        yield state
    except BaseException:
        state.clean()
        raise
    left = state.clean()
    if left:
        pytest.fail("left in the machine's network namespace (now removed): " + ", ".join(left))


def _describe(route: dict[str, Any]) -> str:
    parts = [route.get("type", ""), route.get("dst", "")]
    if route.get("dev"):
        parts += ["dev", route["dev"]]
    if route.get("protocol"):
        parts += ["proto", str(route["protocol"])]
    return " ".join(p for p in parts if p and p != "unicast")
