"""What ADD wired comes back when something else removes it, and only that.

On a node with pods and the agent (its repairer follows rtnetlink):
- a pod's /32 route deleted, its host veth set down (and down and up at
  once), its proxy_arp turned off, the block's blackhole deleted: each is
  back within a generous bound (the p50 and max over REPAIR_TRIES tries are
  printed), and the pod answers a ping again;
- a DEL of the pod racing the repair of its route (RACE_TRIALS trials, the
  DEL cold and through the agent) leaves nothing: no route to the deleted
  pod, no veth, no record;
- an idle node with pods makes no rtnetlink change at all over IDLE_SECONDS.

Times are read by polling the node's kernel every POLL seconds from a
thread inside the node namespace, from the moment the break was made.
CALICO_PY_REPAIR_TRIES, CALICO_PY_REPAIR_RACE_TRIALS, CALICO_PY_IDLE_SECONDS
and CALICO_PY_ATTACK_SEED set the numbers and the seed.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cni_calico_py.core.rtnl import IFF_UP, Rtnl
from tests.attack.driver import Answer, Plugin, RoundLog
from tests.attack.harness import Harness, harness
from tests.attack.invariants import Attachment, leftovers, violations
from tests.attack.scrub import plugin_log_of, scrub
from tests.cni_calls import BLOCK_V4
from tests.netns import Node, sh

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
REPAIR_TRIES = int(os.environ.get("CALICO_PY_REPAIR_TRIES", "20"))
RACE_TRIALS = int(os.environ.get("CALICO_PY_REPAIR_RACE_TRIALS", "100"))
IDLE_SECONDS = float(os.environ.get("CALICO_PY_IDLE_SECONDS", "60"))
BOUND = 5.0  # seconds: generous; the p50 aimed for is well under a second
POLL = 0.002
PODS = 3


@pytest.fixture
def agent_node(bare_node: Node, exe: str, installed_bin: Path, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    # The agent (and so its repairer) journals its repairs beside the test's files.
    monkeypatch.setenv("CALICO_PY_REPAIRS", str(tmp_path / "repairs.jsonl"))
    with harness("agent", bare_node, exe, str(installed_bin), tmp_path, PODS, agent=True) as made:
        yield made


class Kernel:
    """The node's kernel, read from a thread inside the node's namespace."""

    def __init__(self, h: Harness) -> None:
        self.h = h

    def run(self, job: Callable[[Rtnl], object]) -> object:
        def inside() -> object:
            with Rtnl() as rtnl:
                return job(rtnl)

        return self.h.threads.pool.submit(inside).result()

    def wait(self, ok: Callable[[Rtnl], bool], since: float) -> float:
        """Seconds from `since` until `ok` holds; BOUND + 1 when it never did within BOUND."""
        def inside() -> float:
            with Rtnl() as rtnl:
                while time.monotonic() - since < BOUND:
                    if ok(rtnl):
                        return time.monotonic() - since
                    time.sleep(POLL)
            return BOUND + 1

        return float(self.h.threads.pool.submit(inside).result())


def _routed(address: str, veth: str) -> Callable[[Rtnl], bool]:
    def ok(rtnl: Rtnl) -> bool:
        index = rtnl.link_index(veth)
        return index is not None and any(
            r.get("dst") == address and r["dst_len"] == 32 and r.get("oif") == index
            for r in rtnl.routes(2))
    return ok


def _up(veth: str) -> Callable[[Rtnl], bool]:
    def ok(rtnl: Rtnl) -> bool:
        index = rtnl.link_index(veth)
        return index is not None and bool(rtnl.link(index)["flags"] & IFF_UP)
    return ok


def _blackholed(block: str) -> Callable[[Rtnl], bool]:
    network, length = block.split("/")

    def ok(rtnl: Rtnl) -> bool:
        return any(r.get("dst") == network and r["dst_len"] == int(length) and r["type"] == 6
                   for r in rtnl.routes(2))
    return ok


def _proxy_arp_on(veth: str) -> Callable[[Rtnl], bool]:
    def ok(_: Rtnl) -> bool:
        try:
            with open(f"/proc/sys/net/ipv4/conf/{veth}/proxy_arp") as value:
                return value.read().strip() == "1"
        except OSError:
            return False
    return ok


def _all(*checks: Callable[[Rtnl], bool]) -> Callable[[Rtnl], bool]:
    return lambda rtnl: all(check(rtnl) for check in checks)


def test_what_is_removed_comes_back(agent_node: Harness) -> None:
    h = agent_node
    kernel = Kernel(h)
    token = uuid.uuid4().hex[:6]
    pods = [Attachment(f"rep{token}p{i}", pod) for i, pod in enumerate(h.pods)]
    wired = {}
    for who in pods:
        answer = h.plugin.call("ADD", who)
        assert answer.rc == 0 and answer.address, answer
        wired[who] = (answer.address, answer.out["interfaces"][0]["name"])
    h.quiet([])
    node = h.node.name
    Check = Callable[[Rtnl], bool]
    breaks: dict[str, tuple[Callable[[str, str], list[str]], Callable[[str, str], Check]]] = {
        "/32 route": (lambda a, v: ["ip", "-n", node, "route", "del", f"{a}/32", "dev", v],
                      lambda a, v: _routed(a, v)),
        "veth down": (lambda a, v: ["ip", "-n", node, "link", "set", v, "down"],
                      lambda a, v: _all(_up(v), _routed(a, v))),
        "veth down and up": (
            lambda a, v: ["sh", "-c", f"ip -n {node} link set {v} down && "
                                      f"ip -n {node} link set {v} up"],
            lambda a, v: _all(_up(v), _routed(a, v))),
        "proxy_arp off": (
            lambda a, v: ["ip", "netns", "exec", node, "sysctl", "-q", "-w",
                          f"net.ipv4.conf.{v}.proxy_arp=0"],
            lambda a, v: _proxy_arp_on(v)),
        "block blackhole": (
            lambda a, v: ["ip", "-n", node, "route", "del", "blackhole", BLOCK_V4],
            lambda a, v: _blackholed(BLOCK_V4)),
    }
    figures = {}
    slow: list[str] = []
    for name, (command, check) in breaks.items():
        took = []
        for attempt in range(REPAIR_TRIES):
            who = pods[attempt % len(pods)]
            address, veth = wired[who]
            ok = check(address, veth)
            assert kernel.run(ok), f"{name} of {who}: not as ADD left it before the break"
            since = time.monotonic()
            subprocess.run(command(address, veth), check=True, capture_output=True)
            seconds = kernel.wait(ok, since)
            took.append(seconds)
            if seconds > BOUND:
                slow.append(f"{name} of {who} ({address} on {veth}): not back within {BOUND:g} s")
                break
            if not _pings(h.node, address):
                slow.append(f"{name} of {who}: back, but {address} does not answer a ping")
        figures[name] = f"p50 {statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
    summary = f"{REPAIR_TRIES} tries each: " + "; ".join(f"{k}: {v}" for k, v in figures.items())
    print(summary)
    journal = (Path(os.environ["CALICO_PY_REPAIRS"])).read_text() \
        if Path(os.environ["CALICO_PY_REPAIRS"]).exists() else ""
    assert not slow, summary + "\n" + "\n".join(slow) + f"\njournal:\n{journal[-3000:]}"
    kinds = Counter(line.split('"what":"')[1].split('"')[0] for line in journal.splitlines())
    assert {"route", "link", "sysctl", "blackhole"} <= set(kinds), kinds
    for who in pods:
        assert h.plugin.delete_until_done(who, RoundLog("cleanup"))
    h.quiet([])
    assert leftovers(h.snapshot()) == []


def _pings(node: Node, address: str) -> bool:
    return sh("ping", "-c1", "-W2", address, netns=node.name, check=False).returncode == 0


@pytest.mark.parametrize("via", ["cold", "agent"])
def test_a_del_racing_a_repair_leaves_nothing(agent_node: Harness, via: str) -> None:
    h = agent_node
    rng = random.Random(f"{SEED}:repair-race:{via}")
    token = uuid.uuid4().hex[:6]
    caller = h.plugin if via == "agent" else _cold(h)
    shown: list[str] = []
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    trial = 0
    for trial in range(RACE_TRIALS):
        who = Attachment(f"rr{token}t{trial:03d}", h.pods[trial % PODS])
        log = RoundLog(f"trial {trial} ({via}, seed {SEED})")
        found: list[str] = []
        added = h.plugin.call("ADD", who)
        if added.rc != 0 or not added.address:
            found.append(f"the ADD failed: {added}")
        else:
            veth = added.out["interfaces"][0]["name"]
            lag = rng.uniform(0, 0.02)
            breaking = [["ip", "-n", h.node.name, "route", "del", f"{added.address}/32"],
                        ["ip", "-n", h.node.name, "link", "set", veth, "down"]][trial % 2]
            process = caller.start("DEL", who)
            time.sleep(lag)
            subprocess.run(breaking, capture_output=True)
            log.add(f"{who}: DEL started, {' '.join(breaking[3:])} {lag * 1000:.1f} ms later")
            answer: Answer = process.wait()
            caller.threads.live.discard(process)
            log.add(f"{who}: {answer}")
            outcomes[f"DEL {answer.rc}"] += 1
            if answer.rc != 0 and not h.plugin.delete_until_done(who, log):
                found.append(f"{who}: DEL never answered 0")
        time.sleep(0.05)  # a repair the break started has run by now
        h.quiet(found)
        snap = h.snapshot([who.pod])
        found += violations(snap, {who.pod: who}) + leftovers(snap)
        if found:
            shown.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found)
                         + plugin_log_of(h.plugin_log, found))
            scrub(h.node.name, h.pods, h.store)
            if len(shown) >= 4:
                break
    summary = (f"{via}: {trial + 1} trials in {time.monotonic() - started:.1f} s; "
               f"outcomes {dict(outcomes)}")
    print(summary)
    assert not shown, summary + "\n\n" + "\n\n".join(shown)


def _cold(h: Harness) -> Plugin:
    return Plugin(h.threads, h.plugin.exe, h.plugin.conf, h.plugin.cni_path, None)


def test_an_idle_node_changes_nothing(agent_node: Harness) -> None:
    h = agent_node
    token = uuid.uuid4().hex[:6]
    for i, pod in enumerate(h.pods):
        assert h.plugin.call("ADD", Attachment(f"idle{token}p{i}", pod)).rc == 0
    h.quiet([])
    # The kernel's own aftermath of new links first: IPv6 duplicate address detection ends
    # about a second later, with its link-local address and local routes. Neighbour
    # entries age by themselves; nothing of this project writes them on a node alone.
    time.sleep(5.0)
    monitor = subprocess.Popen(["ip", "-n", h.node.name, "-t", "monitor", "link", "route",
                                "netconf", "address"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(IDLE_SECONDS)
    finally:
        monitor.send_signal(signal.SIGINT)
        out, _ = monitor.communicate(timeout=10)
    changes = [line for line in out.splitlines() if line.strip() and not line.startswith("Timestamp")]
    print(f"idle {IDLE_SECONDS:g} s with {PODS} pods: {len(changes)} rtnetlink changes")
    assert changes == [], "\n".join(changes[:40])
    for i, pod in enumerate(h.pods):
        assert h.plugin.delete_until_done(Attachment(f"idle{token}p{i}", pod), RoundLog("cleanup"))
