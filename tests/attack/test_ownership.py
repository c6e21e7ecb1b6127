"""Another container's requests in the same pod netns, or for the same pod, leave a pod's wiring alone.

- DEL of another container ID in the same netns: the runtime sends it after
  that container's ADD was refused (eth0 is the first one's). It must answer
  0 and change nothing of the first attachment.
- Two sandboxes of one pod (same K8S_POD_NAMESPACE/K8S_POD_NAME, so the same
  Calico veth name, different netns): the older one's ADD is stopped
  (SIGSTOP) at a seeded point, the newer one's ADD runs, then the older one
  resumes. Each sandbox's final state must match its answer, and the older
  sandbox's DEL, as kubelet sends it, must leave the newer one wired.
- A retried ADD that fails (the store busy: code 11; the store read-only:
  code 5) leaves the working pair of the first ADD working.

Each runs cold and through the agent. CALICO_PY_ATTACK_SEED picks delays,
CALICO_PY_OWNERSHIP_TRIALS the number of trials.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attack.driver import Answer, Process, RoundLog
from tests.attack.harness import Harness, harness
from tests.attack.invariants import Attachment, leftovers, state_of, violations, wired_as_answered
from tests.attack.scrub import plugin_log_of, scrub
from tests.netns import Node, sh

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
TRIALS = int(os.environ.get("CALICO_PY_OWNERSHIP_TRIALS", "100"))
PODS = 4
SHOWN = 4  # failing trials printed in full; the test stops after this many
REFUSED = 100  # CNI: the interface exists (the container's ADD is refused)


@pytest.fixture(params=["cold", "agent"])
def shared_node(request: pytest.FixtureRequest, bare_node: Node, exe: str, installed_bin: Path,
                tmp_path: Path) -> Iterator[Harness]:
    with harness(request.param, bare_node, exe, str(installed_bin), tmp_path, PODS,
                 agent=request.param == "agent") as made:
        yield made


class Failures:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.shown: list[str] = []

    def judge(self, log: RoundLog, found: list[str], pods: list[str]) -> None:
        found += self.h.plugin.misbehaved
        self.h.plugin.misbehaved.clear()
        if not found:
            return
        self.shown.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found)
                          + plugin_log_of(self.h.plugin_log, found))
        self.h.quiet([])
        scrub(self.h.node.name, pods, self.h.store)

    @property
    def enough(self) -> bool:
        return len(self.shown) >= SHOWN

    def check(self, summary: str) -> None:
        print(summary)
        assert not self.shown, (f"{summary}\n{len(self.shown)} trial(s) broke an invariant (the "
                                f"run stops after {SHOWN}):\n\n" + "\n\n".join(self.shown))


def test_del_of_another_container_in_the_netns_leaves_the_first_intact(shared_node: Harness) -> None:
    h = shared_node
    started = time.monotonic()
    token = uuid.uuid4().hex[:6]
    failures = Failures(h)
    outcomes: Counter[str] = Counter()
    trial = 0
    for trial in range(TRIALS):
        pod = h.pods[trial % PODS]
        first = Attachment(f"own{token}t{trial:03d}a", pod)
        second = Attachment(f"own{token}t{trial:03d}b", pod)
        log = RoundLog(f"trial {trial} ({h.mode}): ADD {first}, ADD {second}, DEL {second}")
        found: list[str] = []
        added = _logged(h, "ADD", first, log)
        refused = _logged(h, "ADD", second, log)
        if added.rc != 0 or refused.code != REFUSED:
            found.append(f"expected ADD {first} -> 0 and ADD {second} -> code {REFUSED}: "
                         f"{added}; {refused}")
        deleted = _logged(h, "DEL", second, log)
        outcomes[f"{_short(added)}, {_short(refused)}, {_short(deleted)}"] += 1
        if deleted.rc != 0:
            found.append(f"DEL {second}: {deleted}")
        h.quiet(found)
        snap = h.snapshot([pod])
        found += violations(snap, {pod: first})
        if added.address:
            found += wired_as_answered(snap, first, added.address)
            if not ping(h.node, added.address):
                found.append(f"{first}: {added.address} does not answer from the node after "
                             f"the DEL of {second}")
        if not h.plugin.delete_until_done(first, log):
            found.append(f"{first}: DEL never answered 0")
        h.quiet(found)
        found += leftovers(h.snapshot([pod]))
        failures.judge(log, found, [pod])
        if failures.enough:
            break
    failures.check(f"{h.mode}: {trial + 1} trials in {time.monotonic() - started:.1f} s, "
                   f"outcomes {dict(outcomes)}")


def test_two_sandboxes_of_one_pod_each_keep_their_own(shared_node: Harness) -> None:
    h = shared_node
    started = time.monotonic()
    rng = random.Random(f"{SEED}:{h.mode}:sandboxes")
    typical = h.plugin.typical_seconds(h.pods[:2], cycles=1)["ADD"]
    token = uuid.uuid4().hex[:6]
    failures = Failures(h)
    outcomes: Counter[str] = Counter()
    trial = 0
    for trial in range(TRIALS):
        pods = [h.pods[(2 * trial) % PODS], h.pods[(2 * trial + 1) % PODS]]
        name = f"web{token}t{trial:03d}"
        older = Attachment(f"sb{token}t{trial:03d}old", pods[0], pod_name=name)
        newer = Attachment(f"sb{token}t{trial:03d}new", pods[1], pod_name=name)
        stop_at = rng.uniform(0, typical)
        # Resumed once the newer ADD answered, or after this long if it waits on the older.
        resume_after = rng.uniform(0.05, 0.3)
        log = RoundLog(f"trial {trial} ({h.mode}, seed {SEED}): ADD {older} stopped at "
                       f"{stop_at * 1000:.1f} ms, ADD {newer}, resume")
        found: list[str] = []
        answers = _stopped_mid_add(h, older, newer, stop_at, resume_after, log)
        h.quiet(found)
        snap = h.snapshot(pods)
        owners = {older.pod: older, newer.pod: newer}
        found += violations(snap, owners)
        for who, answer in zip((older, newer), answers, strict=True):
            if answer.rc == 0 and answer.address:
                found += wired_as_answered(snap, who, answer.address)
        states = [state_of(snap, who)[0].split(":")[0] for who in (older, newer)]
        outcomes[f"{_short(answers[0])}/{_short(answers[1])} -> {'/'.join(states)}"] += 1
        # The runtime's DELs: the failed ADDs', then the older sandbox's as kubelet sends it.
        for who, answer in zip((older, newer), answers, strict=True):
            if answer.rc != 0 and not h.plugin.delete_until_done(who, log):
                found.append(f"{who}: DEL never answered 0")
        if answers[0].rc == 0 and not h.plugin.delete_until_done(older, log):
            found.append(f"{older}: DEL never answered 0")
        h.quiet(found)
        snap = h.snapshot(pods)
        found += violations(snap, owners)
        if answers[1].rc == 0 and answers[1].address:
            found += [f"after the older sandbox's DEL: {v}"
                      for v in wired_as_answered(snap, newer, answers[1].address)]
        if not h.plugin.delete_until_done(newer, log):
            found.append(f"{newer}: DEL never answered 0")
        h.quiet(found)
        found += leftovers(h.snapshot(pods))
        failures.judge(log, found, pods)
        if failures.enough:
            break
    failures.check(f"{h.mode}: {trial + 1} trials in {time.monotonic() - started:.1f} s, seed "
                   f"{SEED}; typical ADD {typical * 1000:.1f} ms; outcomes {dict(outcomes)}")


def _stopped_mid_add(h: Harness, older: Attachment, newer: Attachment, stop_at: float,
                     resume_after: float, log: RoundLog) -> tuple[Answer, Answer]:
    """The older ADD stopped at `stop_at`, the newer ADD run, the older resumed; both answers."""
    process = h.plugin.start("ADD", older)
    log.add(f"{older}: ADD started (pid {process.pid})")
    stopped = _stop_at(h, process, stop_at)
    log.add(f"{older}: stopped {stopped or 'nothing (it had ended)'}")
    try:
        late = h.threads.pool.submit(_logged, h, "ADD", newer, log)
        deadline = time.monotonic() + resume_after
        while not late.done() and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        for pid in stopped:
            _signal(pid, signal.SIGCONT)
        log.add(f"{older}: resumed")
    answer = process.wait()
    h.threads.live.discard(process)
    h.plugin.judge(older, answer, killed_by_us=False)
    log.add(f"{older}: {answer}")
    return answer, late.result()


def _stop_at(h: Harness, process: Process, delay: float) -> list[int]:
    """SIGSTOP what serves the request at `delay`: the cold process, or the agent's busy worker."""
    time.sleep(max(0.0, process.started + delay - time.perf_counter()))
    if h.workers is None:
        return [process.pid] if _signal(process.pid, signal.SIGSTOP) else []
    for _ in range(200):
        busy = h.workers.busy()
        if busy:
            return [pid for pid in busy if _signal(pid, signal.SIGSTOP)]
        if process.popen.poll() is not None:
            return []
        time.sleep(0.0005)
    return []


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("fault", ["store busy", "store read-only"])
def test_a_failing_retried_add_leaves_the_working_pod_working(shared_node: Harness,
                                                                fault: str) -> None:
    h = shared_node
    who = Attachment(f"retry{uuid.uuid4().hex[:6]}", h.pods[0])
    log = RoundLog(f"{h.mode}: ADD {who}, then a retry with the {fault}")
    first = _logged(h, "ADD", who, log)
    assert first.rc == 0 and first.address, first
    with _store_fault(h, fault):
        retry = _logged(h, "ADD", who, log)
    expected = 11 if fault == "store busy" else 5
    found = [] if retry.code == expected or retry.rc == 0 else [
        f"the retry answered {retry}, expected code {expected} (or 0)"]
    h.quiet(found)
    snap = h.snapshot([who.pod])
    found += violations(snap, {who.pod: who})
    found += wired_as_answered(snap, who, first.address)
    if not ping(h.node, first.address):
        found.append(f"{who}: {first.address} no longer answers after the failed retry")
    if not h.plugin.delete_until_done(who, log):
        found.append(f"{who}: DEL never answered 0")
    h.quiet(found)
    found += leftovers(h.snapshot([who.pod])) + h.plugin.misbehaved
    assert not found, f"{log}\n" + "\n".join(f"  - {v}" for v in found) + plugin_log_of(
        h.plugin_log, found)


@contextlib.contextmanager
def _store_fault(h: Harness, fault: str) -> Iterator[None]:
    store = str(h.store)
    if fault == "store busy":
        # The store's own lock, held here past the config's lockTimeoutSeconds.
        fd = os.open(os.path.join(store, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
    # Read-only as a full or failed disk is: a read-only bind mount over the store.
    subprocess.run(["mount", "--bind", store, store], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", store], check=True)
        yield
    finally:
        subprocess.run(["umount", store], check=True)


def ping(node: Node, address: str) -> bool:
    return sh("ping", "-c1", "-W2", address, netns=node.name, check=False).returncode == 0


def _logged(h: Harness, verb: str, who: Attachment, log: RoundLog) -> Answer:
    log.add(f"{who}: {verb} started")
    answer = h.plugin.call(verb, who)
    log.add(f"{who}: {answer}")
    return answer


def _short(answer: Answer) -> str:
    return f"{answer.verb} {answer.rc}" + (f"/{answer.code}" if answer.code is not None else "")
