"""Two stores in one block on one node: one store's DEL must not take the other's blackhole.

Two network configs on a node can hand out addresses of one block through
different stores: another dataDir (a config without ipam.dataDir beside one
with it), or another network name in the same dataDir. Each config here has
its own part of the block (rangeStart/rangeEnd), so no address is handed out
twice. The block's blackhole must stay while any store holds an address in
the block, and go with the last one.

The race: store A's DEL of its only address against store B's ADD of its
first, through the installed calico-py-ipam, cold and through the agent.
Half of the trials start both at once, the rest the second after a seeded
delay of up to half a call. After each trial the blackhole must be there iff
some store holds an address of the block. CALICO_PY_ATTACK_SEED picks orders
and delays, CALICO_PY_RACE_TRIALS the number of trials.

The stores' list of each block (ipam/block_stores.py) goes to the test's
own directory, for the cold calls and the agent alike.
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.attack.driver import AgentWorkers, Answer, NodeThreads, Plugin, RoundLog
from tests.attack.invariants import Attachment
from tests.cni_calls import BLOCK_V4, netconf
from tests.netns import Node, agent_status, ip_json, running_agent, sh

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
TRIALS = int(os.environ.get("CALICO_PY_RACE_TRIALS", "100"))
SHOWN_TRIALS = 4  # trials with violations printed in full; the test stops after this many
BLOCK = ipaddress.ip_network(BLOCK_V4)
REGISTRY_ENV = "CALICO_PY_BLOCK_STORES"
# Each store's part of the one block.
PARTS = {"A": ("10.252.7.0", "10.252.7.31"), "B": ("10.252.7.32", "10.252.7.63")}
LAYOUTS = ["two dataDirs", "two names in one dataDir"]


@dataclass
class Store:
    """One network config and where its store is."""

    conf: dict[str, Any]
    directory: Path  # <dataDir>/<network name>

    def held(self) -> list[str]:
        """The addresses of the block this store has a record of."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                if ipaddress.ip_address(name) in BLOCK:
                    found.append(name)
            except ValueError:
                continue
        return sorted(found)


def stores(tmp_path: Path, layout: str) -> dict[str, Store]:
    made = {}
    for key, (first, last) in PARTS.items():
        if layout == "two dataDirs":
            data_dir, name = tmp_path / f"data-{key}", "testnet"
        else:
            data_dir, name = tmp_path / "data", f"net-{key}"
        data_dir.mkdir(exist_ok=True)
        conf = netconf(data_dir, name=name, ipam={"ranges": [[
            {"subnet": BLOCK_V4, "rangeStart": first, "rangeEnd": last}]]})
        made[key] = Store(conf, data_dir / name)
    return made


def blackholes(node: Node) -> list[dict[str, Any]]:
    return [r for r in ip_json(node.name, "-4", "route", "show", "type", "blackhole")
            if r.get("dst") == BLOCK_V4]


def registry_left(registry: Path) -> list[str]:
    return sorted(os.listdir(registry)) if registry.exists() else []


@dataclass
class SharedPlugin(Plugin):
    """The plugin as the runtime calls it, with the block lists in the test's directory."""

    registry: str = ""

    def env(self, verb: str, who: Attachment) -> dict[str, str]:
        return {**super().env(verb, who), REGISTRY_ENV: self.registry}


@dataclass
class Calls:
    node: Node
    threads: NodeThreads
    socket: str | None
    workers: AgentWorkers | None
    registry: Path
    cni_path: str

    def plugin(self, exe: str, conf: dict[str, Any]) -> SharedPlugin:
        return SharedPlugin(self.threads, exe, conf, self.cni_path, self.socket,
                            registry=str(self.registry))

    def quiet(self) -> str:
        return self.workers.wait_quiet() if self.workers is not None else ""


@pytest.fixture(params=["cold", "agent"])
def calls(request: pytest.FixtureRequest, bare_node: Node, exe: str, installed_bin: Path,
          tmp_path: Path) -> Iterator[Calls]:
    registry = tmp_path / "block-stores"
    threads = NodeThreads(bare_node.path, threads=4)
    try:
        if request.param == "cold":
            yield Calls(bare_node, threads, None, None, registry, str(installed_bin))
            return
        socket = str(tmp_path / "agent.sock")
        env = {**os.environ, REGISTRY_ENV: str(registry)}
        with running_agent(bare_node, exe, socket, env=env) as agent:
            status = agent_status(exe, socket)
            assert status is not None, "the agent does not answer status"
            workers = AgentWorkers(agent.pid, int(status["workers"]))
            yield Calls(bare_node, threads, socket, workers, registry, str(installed_bin))
    finally:
        threads.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_stores_del_leaves_the_blackhole_another_store_needs(
        calls: Calls, exe: str, tmp_path: Path, layout: str) -> None:
    node = calls.node
    net = stores(tmp_path, layout)
    plugins = {key: calls.plugin(exe, store.conf) for key, store in net.items()}
    pods = {key: Attachment(f"shared{key}{uuid.uuid4().hex[:6]}", os.path.basename(node.add_pod()))
            for key in net}
    log = RoundLog(f"{layout} ({'agent' if calls.socket else 'cold'})")
    for key in ("A", "B"):
        answer = plugins[key].call("ADD", pods[key])
        log.add(f"store {key}: {answer}")
        assert answer.rc == 0, f"{log}\n{answer.err[-2000:]}"
    assert net["A"].held() and net["B"].held(), log
    assert len(blackholes(node)) == 1, log

    answer = plugins["A"].call("DEL", pods["A"])
    log.add(f"store A: {answer}")
    assert answer.rc == 0, log
    assert net["A"].held() == [] and len(net["B"].held()) == 1, log
    assert len(blackholes(node)) == 1, (
        f"store A's DEL removed the blackhole of {BLOCK_V4} while store B still holds "
        f"{net['B'].held()}\n{log}")
    (held_b,) = net["B"].held()
    routed = [r for r in ip_json(node.name, "-4", "route", "show", held_b) if r.get("dev")]
    assert routed and routed[0]["dev"].startswith("cali"), (routed, log)
    assert sh("ping", "-c1", "-W2", held_b, netns=node.name, check=False).returncode == 0, log

    answer = plugins["B"].call("DEL", pods["B"])
    log.add(f"store B: {answer}")
    assert answer.rc == 0, log
    assert net["B"].held() == [] and blackholes(node) == [], log
    assert registry_left(calls.registry) == [], log
    assert not plugins["A"].misbehaved + plugins["B"].misbehaved


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_stores_del_racing_another_stores_first_add(
        calls: Calls, installed_bin: Path, tmp_path: Path, layout: str) -> None:
    node = calls.node
    started = time.monotonic()
    rng = random.Random(f"{SEED}:{'agent' if calls.socket else 'cold'}:{layout}")
    net = stores(tmp_path, layout)
    ipam_exe = str(installed_bin / "calico-py-ipam")
    plugins = {key: calls.plugin(ipam_exe, {k: v for k, v in store.conf.items()
                                            if k in ("cniVersion", "name", "ipam")})
               for key, store in net.items()}
    pod = os.path.basename(node.add_pod())
    typical = plugins["A"].typical_seconds([pod], cycles=2)
    token = uuid.uuid4().hex[:6]
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    trial = 0
    for trial in range(TRIALS):
        a = Attachment(f"race{token}t{trial:03d}a", pod)
        b = Attachment(f"race{token}t{trial:03d}b", pod)
        order = ["DEL", "ADD"] if rng.random() < 0.5 else ["ADD", "DEL"]
        lag = 0.0 if rng.random() < 0.5 else rng.uniform(0, typical["ADD"] / 2)
        log = RoundLog(f"trial {trial} ({'agent' if calls.socket else 'cold'}, {layout}, seed "
                       f"{SEED}): A's DEL and B's ADD, {order[0]} first, the other {lag * 1000:.1f} "
                       "ms later")
        found: list[str] = []
        first = plugins["A"].call("ADD", a)
        log.add(f"A {a}: {first}")
        if first.rc != 0:
            found.append(f"store A's ADD failed: {first}")
        jobs = {"DEL": partial(_call, plugins["A"], "DEL", a, log),
                "ADD": partial(_call, plugins["B"], "ADD", b, log)}
        timed = calls.threads.run_all([partial(_after, 0.0, jobs[order[0]]),
                                       partial(_after, lag, jobs[order[1]])])
        found += [f"{answer}" for answer, _, _ in timed if answer.rc != 0]
        quiet = calls.quiet()
        if quiet:
            found.append(quiet)
        found += _invariant(node, net, "after the race", log)
        outcomes[_overlap(dict(zip(order, timed, strict=True)))] += 1
        for key, who in (("B", b), ("A", a)):
            if net[key].held() and not plugins[key].delete_until_done(who, log):
                found.append(f"store {key}: DEL never answered 0")
        found += _invariant(node, net, "after both DELs", log)
        found += plugins["A"].misbehaved + plugins["B"].misbehaved
        plugins["A"].misbehaved.clear()
        plugins["B"].misbehaved.clear()
        if found:
            failures.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found))
            _scrub(node, net)
            if len(failures) >= SHOWN_TRIALS:
                break
    summary = (f"{'agent' if calls.socket else 'cold'} {layout}: {trial + 1} trials in "
               f"{time.monotonic() - started:.1f} s, seed {SEED}; typical ADD "
               f"{typical['ADD'] * 1000:.1f} ms, DEL {typical['DEL'] * 1000:.1f} ms; outcomes "
               f"{dict(sorted(outcomes.items()))}")
    print(summary)
    assert not failures, (f"{summary}\n{len(failures)} trial(s) broke the invariant (the run "
                          f"stops after {SHOWN_TRIALS}):\n\n" + "\n\n".join(failures))
    assert registry_left(calls.registry) == []


def _after(lag: float, job: Any) -> tuple[Answer, float, float]:
    """The job's answer, and when it started and ended."""
    if lag:
        time.sleep(lag)
    began = time.perf_counter()
    answer: Answer = job()
    return answer, began, time.perf_counter()


def _overlap(timed: dict[str, tuple[Answer, float, float]]) -> str:
    (_, del_began, del_ended), (_, add_began, add_ended) = timed["DEL"], timed["ADD"]
    if del_ended < add_began:
        return "A's DEL ended before B's ADD began"
    if add_ended < del_began:
        return "B's ADD ended before A's DEL began"
    return "overlapped"


def _call(plugin: Plugin, verb: str, who: Attachment, log: RoundLog) -> Answer:
    log.add(f"{who}: {verb} started")
    answer = plugin.call(verb, who)
    log.add(f"{who}: {answer}")
    return answer


def _invariant(node: Node, net: dict[str, Store], when: str, log: RoundLog) -> list[str]:
    """The blackhole is there iff some store holds an address of the block."""
    held = {key: store.held() for key, store in net.items()}
    present = bool(blackholes(node))
    log.add(f"{when}: held {held}, blackhole {'present' if present else 'absent'}")
    holders = [key for key, addresses in held.items() if addresses]
    if holders and not present:
        return [f"{when}: store(s) {', '.join(holders)} hold {held} but the node has no "
                f"blackhole for {BLOCK_V4}"]
    if present and not holders:
        return [f"{when}: no store holds an address of {BLOCK_V4} but its blackhole is there"]
    return []


def _scrub(node: Node, net: dict[str, Store]) -> None:
    """A clean block for the next trial after a broken one."""
    for store in net.values():
        for name in store.held():
            (store.directory / name).unlink(missing_ok=True)
    sh("ip", "-n", node.name, "route", "del", "blackhole", BLOCK_V4, check=False)
