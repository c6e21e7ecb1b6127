"""BGP mode against real BIRDs: two node namespaces joined by one veth.

Every BIRD is started by `Bird.apply` in a subprocess inside its node's
namespace, as the node daemon would, and all of them are killed before the
namespaces go. Nothing is sent from the root namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import add_netns, del_netns, ip_json, sh, unique_name, wait_for

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
POOL = "192.168.0.0/16"
PROBE = """
import ipaddress, json, sys
from cni_calico_py.cluster.bird import Bird, BirdError
from cni_calico_py.cluster.bird_config import render
from cni_calico_py.datastore.model import NodeRecord

args = json.loads(sys.argv[1])
bird = Bird(args["dir"])
try:
    if args["action"] == "apply":
        me = NodeRecord(**args["me"])
        peers = [NodeRecord(**p) for p in args["peers"]]
        blocks = [ipaddress.IPv4Network(b) for b in args["blocks"]]
        result = bird.apply(render(me, peers, ipaddress.IPv4Network(args["pool"]), 64512,
                                   bird.log_path, blocks, "Off"))
    elif args["action"] == "peers":
        result = bird.peer_states()
    else:
        bird.stop()
        result = bird.running()
except BirdError as err:
    print(err)
    sys.exit(3)
print(json.dumps(result))
"""


@dataclass
class BgpNode:
    netns: str
    address: str
    block: str
    dir: Path

    @property
    def record(self) -> dict[str, Any]:
        return {"name": self.netns, "ip": f"{self.address}/24", "as_number": 64512, "vtep_mac": "-"}

    def probe(self, action: str, peers: list[dict[str, Any]] | None = None,
              blocks: list[str] | None = None) -> Any:
        args = {"action": action, "dir": str(self.dir), "me": self.record, "peers": peers or [],
                "pool": POOL, "blocks": [self.block] if blocks is None else blocks}
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", PROBE, json.dumps(args)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def apply(self, *peers: BgpNode, extra: list[dict[str, Any]] | None = None,
              blocks: list[str] | None = None) -> str:
        """BIRD configured as the daemon does it: the peers, and the node's blocks, which
        BIRD holds as blackholes and announces (by default, the node's one block)."""
        result: str = self.probe("apply", [self.record, *(p.record for p in peers), *(extra or [])],
                                 blocks)
        return result

    def pid(self) -> int:
        return int((self.dir / "bird.pid").read_text())

    def route(self, dst: str) -> dict[str, Any] | None:
        found = ip_json(self.netns, "-4", "route", "show", dst)
        return found[0] if found else None


def kill_all(netns: str) -> None:
    """SIGKILL whatever still runs in the namespace (BIRD outlives its starter by design)."""
    pids = [int(p) for p in sh("ip", "netns", "pids", netns, check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[BgpNode, BgpNode]]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("bird") is None:
        pytest.fail("this test needs root, iproute2 and bird (Debian bird2)")
    made: list[str] = []
    try:
        pair = []
        for index, third in ((1, 1), (2, 2)):
            name = unique_name(f"bgp{index}")
            add_netns(name)
            made.append(name)
            # No IPv6 chatter: only the BGP session talks on the link.
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=name)
            sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", netns=name)
            directory = tmp_path / name
            directory.mkdir()
            pair.append(BgpNode(name, f"10.98.0.1{index}", f"192.168.{third}.0/26", directory))
        one, two = pair
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", two.netns,
           netns=one.netns)
        for node in pair:
            sh("ip", "addr", "add", f"{node.address}/24", "dev", "eth0", netns=node.netns)
            sh("ip", "link", "set", "eth0", "up", netns=node.netns)
        yield one, two
    finally:
        for name in made:
            kill_all(name)
            del_netns(name)


def learned(node: BgpNode, other: BgpNode) -> bool:
    route = node.route(other.block)
    return route is not None and route.get("protocol") == "bird"


def test_blocks_are_exchanged_and_withdrawn(nodes):
    one, two = nodes
    assert one.apply(two) == "started"
    assert two.apply(one) == "started"

    took = wait_for(lambda: learned(one, two) and learned(two, one), "routes over BGP", 8)
    print(f"converged in {took:.2f} s")
    for node, other in ((one, two), (two, one)):
        route = node.route(other.block)
        assert route is not None
        assert (route["dst"], route.get("gateway"), route["dev"]) == (other.block, other.address, "eth0")
        assert route.get("metric", 0) == 0
        assert route.get("type", "unicast") == "unicast"
    # The own block is BIRD's blackhole, as on a Calico node.
    assert one.route(one.block) == {"type": "blackhole", "dst": one.block, "protocol": "bird",
                                    "flags": []}
    wait_for(lambda: one.probe("peers") == {two.address: "Established"}, "node 1 established", 5)
    assert two.probe("peers") == {one.address: "Established"}

    # Releasing a block is BIRD no longer holding it: withdrawn from the peer, gone locally.
    assert two.apply(one, blocks=[]) == "reconfigured"
    wait_for(lambda: one.route(two.block) is None, "withdrawal of node 2's released block", 3)
    assert two.route(two.block) is None
    assert two.apply(one) == "reconfigured"
    wait_for(lambda: learned(one, two), "node 2's block announced again", 3)

    # A BIRD that is told to go says so to its peers, which withdraw at once.
    os.kill(two.pid(), signal.SIGTERM)
    wait_for(lambda: one.route(two.block) is None, "withdrawal after SIGTERM of node 2's BIRD", 3)
    wait_for(lambda: two.route(one.block) is None, "node 2's BIRD removing its kernel routes", 3)
    assert one.probe("peers")[two.address] != "Established"
    assert two.probe("peers") == {}

    assert two.apply(one) == "started"
    wait_for(lambda: learned(one, two) and learned(two, one), "routes after the restart", 8)


def test_apply_is_idempotent_and_reconfigures_in_place(nodes):
    one, two = nodes
    assert one.apply(two) == "started"
    assert two.apply(one) == "started"
    wait_for(lambda: learned(one, two) and learned(two, one), "routes over BGP", 8)
    pid = one.pid()
    conf = (one.dir / "bird.conf").read_text()

    assert one.apply(two) == "unchanged"
    assert (one.dir / "bird.conf").read_text() == conf

    third = {"name": "node3", "ip": "10.98.0.13/24", "as_number": 64512, "vtep_mac": "-"}
    assert one.apply(two, extra=[third]) == "reconfigured"
    assert one.pid() == pid
    assert "peer_10_98_0_13" in (one.dir / "bird.conf").read_text()
    states = one.probe("peers")
    assert set(states) == {two.address, "10.98.0.13"}
    assert states["10.98.0.13"] != "Established"
    # Adding a peer leaves the other session and its routes alone.
    assert states[two.address] == "Established"
    assert learned(one, two)

    assert one.probe("stop") is False
    assert two.probe("stop") is False
    assert one.probe("peers") == {}
