"""SIGKILL at random points of ADD and DEL; the node must stay sound whatever was cut short.

Three ways to die:
- cold: the installed executable with no agent (CALICO_PY_AGENT_SOCKET=off);
- launcher: the launcher with the agent up, killed while it waits for the agent;
- worker: the agent's worker serving the request (the agent replaces it).

A round gives each of several pods a request that is killed after a delay
drawn from [0, the median duration of that verb measured first]. Then the
test does what a runtime does: a killed or failed DEL is repeated until it
answers 0 (code 11 answers too), a killed or failed ADD is followed by DELs
until one answers 0 (as containerd does) or retried once first. Once the node
is quiet the invariants are checked; then every pod is deleted and nothing of
them may remain. A call the test did not kill must answer as CNI says: exit 0,
or an error object on stdout (a launcher dying of SIGPIPE breaks that).

Seeded and repeatable: CALICO_PY_ATTACK_SEED (printed on failure) picks the
verbs, delays and recoveries; CALICO_PY_KILLS sets the kills per mode.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from tests.attack.driver import AgentWorkers, Answer, Process, RoundLog
from tests.attack.harness import Harness, harness
from tests.attack.invariants import Attachment, leftovers, violations, wired_as_answered
from tests.attack.scrub import plugin_log_of, scrub
from tests.netns import Node

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
KILLS = int(os.environ.get("CALICO_PY_KILLS", "60"))
PODS = 6
SHOWN_ROUNDS = 4  # rounds with violations printed in full; the test stops after this many


@dataclass
class Plan:
    """One pod's part of a round: which verb is killed, when, and what the runtime does after."""

    who: Attachment
    verb: str
    delay: float
    retry_add: bool  # after a killed or failed ADD: ADD once more before the DELs


@dataclass
class Recovery:
    address: str | None = None  # the pod ended up added, with this address
    problems: list[str] = field(default_factory=list)


@pytest.fixture(params=["cold", "launcher", "worker"])
def node_under_attack(request: pytest.FixtureRequest, bare_node: Node, exe: str, installed_bin: Path,
                      tmp_path: Path) -> Iterator[Harness]:
    with harness(request.param, bare_node, exe, str(installed_bin), tmp_path, PODS,
                 agent=request.param != "cold") as made:
        yield made


def test_sigkill_at_random_points(node_under_attack: Harness) -> None:
    h = node_under_attack
    started = time.monotonic()
    rng = random.Random(f"{SEED}:{h.mode}")
    typical = h.plugin.typical_seconds(h.pods[:3])
    token = uuid.uuid4().hex[:6]  # container IDs of this run only (attachment locks are node-wide)
    kills = 0
    answers: Counter[str] = Counter()
    failures: list[str] = []
    rounds = 0
    while kills < KILLS and len(failures) < SHOWN_ROUNDS:
        assert rounds < 3 * KILLS + 10, f"only {kills} kills landed in {rounds} rounds"
        log = RoundLog(f"round {rounds} (mode {h.mode}, seed {SEED})")
        plans = _plans(rng, h, typical, f"k{token}r{rounds:03d}")
        landed, found = _round(h, plans, log, answers)
        kills += landed
        rounds += 1
        if found:
            failures.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found)
                            + plugin_log_of(h.plugin_log, found))
            _reset(h)
    summary = (f"mode {h.mode}: {kills} kills in {rounds} rounds, {time.monotonic() - started:.1f} s; "
               f"typical ADD {typical['ADD'] * 1000:.1f} ms, DEL {typical['DEL'] * 1000:.1f} ms; "
               f"seed {SEED}; answers {dict(sorted(answers.items()))}")
    print(summary)
    assert not failures, (f"{summary}\n{len(failures)} round(s) broke an invariant "
                          f"(the run stops after {SHOWN_ROUNDS}):\n\n" + "\n\n".join(failures))


def _plans(rng: random.Random, h: Harness, typical: dict[str, float], prefix: str) -> list[Plan]:
    # Killing the worker kills whatever is being served then, so a worker round
    # kills one verb at one point; the other modes kill each request on its own.
    verb = rng.choice(["ADD", "DEL"])
    delay = rng.uniform(0, typical[verb])
    plans = []
    for index, pod in enumerate(h.pods):
        if h.mode != "worker":
            verb = rng.choice(["ADD", "DEL"])
            delay = rng.uniform(0, typical[verb])
        plans.append(Plan(Attachment(f"{prefix}p{index}", pod), verb, delay, rng.random() < 0.5))
    return plans


def _round(h: Harness, plans: list[Plan], log: RoundLog, answers: Counter[str]) -> tuple[int, list[str]]:
    found: list[str] = []
    owners = {p.who.pod: p.who for p in plans}
    # A DEL can only be cut short on a pod that was added.
    setups = [p for p in plans if p.verb == "DEL"]
    for plan, answer in zip(setups, h.threads.run_all([partial(h.plugin.call, "ADD", p.who)
                                                        for p in setups]), strict=True):
        log.add(f"{plan.who}: setup {answer}")
        if answer.rc != 0:
            found.append(f"{plan.who}: the setup ADD failed: {answer}")
    h.quiet(found)
    landed, outcomes = _attack(h, plans, log)
    for answer, _ in outcomes:
        answers[_kind(answer)] += 1
    for _, recovery in outcomes:
        found += recovery.problems
    h.quiet(found)
    snap = h.snapshot()
    found += violations(snap, owners)
    for plan, (_, recovery) in zip(plans, outcomes, strict=True):
        if recovery.address is not None:
            found += wired_as_answered(snap, plan.who, recovery.address)
    log.add("checked the node after the recoveries; now DEL of every pod")
    for plan, done in zip(plans, h.threads.run_all(
            [partial(h.plugin.delete_until_done, p.who, log) for p in plans]), strict=True):
        if not done:
            found.append(f"{plan.who}: DEL never answered 0")
    h.quiet(found)
    snap = h.snapshot()
    found += violations(snap, owners) + leftovers(snap) + h.plugin.misbehaved
    h.plugin.misbehaved.clear()
    return landed, found


def _attack(h: Harness, plans: list[Plan], log: RoundLog) -> tuple[int, list[tuple[Answer, Recovery]]]:
    """Every plan's request at once, each killed at its point and followed by its runtime's
    recovery as soon as it ended; the kills that landed, and each plan's answer and recovery."""
    started: list[Process] = []
    lock = threading.Lock()

    def script(plan: Plan) -> tuple[Answer, Recovery]:
        process = h.plugin.start(plan.verb, plan.who)
        with lock:
            started.append(process)
        log.add(f"{plan.who}: {plan.verb} started (pid {process.pid}), SIGKILL due at "
                f"{plan.delay * 1000:.1f} ms")
        if h.mode != "worker":
            _sleep_until(process.started + plan.delay)
            process.kill()
        answer = process.wait()
        h.threads.live.discard(process)
        h.plugin.judge(plan.who, answer, killed_by_us=h.mode != "worker")
        log.add(f"{plan.who}: {answer}")
        return answer, _recover(h, plan, answer, log)

    futures = [h.threads.pool.submit(script, plan) for plan in plans]
    landed = 0
    if h.mode == "worker":
        assert h.workers is not None
        while len(started) < len(plans) and not any(f.done() for f in futures):
            time.sleep(0.0002)
        landed = _kill_workers(h.workers, list(started), plans[0].delay, log)
    outcomes = [f.result() for f in futures]
    if h.mode != "worker":
        landed = sum(answer.killed for answer, _ in outcomes)
    return landed, outcomes


def _kill_workers(workers: AgentWorkers, processes: list[Process], delay: float, log: RoundLog) -> int:
    """At `delay`, SIGKILL every worker serving a request (waiting for one to start serving)."""
    _sleep_until(min(p.started for p in processes) + delay)
    while True:
        killed = workers.kill_busy()
        if killed:
            log.add(f"SIGKILL to the busy workers {killed}")
            return len(killed)
        if all(p.popen.poll() is not None for p in processes):
            log.add("no worker was busy before every request ended: nothing killed")
            return 0
        time.sleep(0.0002)


def _recover(h: Harness, plan: Plan, answer: Answer, log: RoundLog) -> Recovery:
    """What the runtime does after the answer (or the kill) of the plan's request."""
    if answer.rc == 0:
        return Recovery(answer.address if plan.verb == "ADD" else None)
    if plan.verb == "ADD" and plan.retry_add:
        retry = h.plugin.call("ADD", plan.who)
        log.add(f"{plan.who}: retried {retry}")
        if retry.rc == 0:
            return Recovery(retry.address)
    if not h.plugin.delete_until_done(plan.who, log):
        return Recovery(problems=[f"{plan.who}: DEL never answered 0 after the {plan.verb} that "
                                  f"ended: {answer}"])
    return Recovery()


def _reset(h: Harness) -> None:
    """After a broken round: let the agent finish, then remove what the round left."""
    if h.workers is not None:
        h.workers.wait_quiet()
    scrub(h.node.name, h.pods, h.store)


def _kind(answer: Answer) -> str:
    if answer.killed:
        return f"{answer.verb} killed"
    if answer.rc == 0:
        return f"{answer.verb} 0"
    return f"{answer.verb} {answer.rc}/code {answer.code}"


def _sleep_until(when: float) -> None:
    remaining = when - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
