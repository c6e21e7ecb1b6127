"""The agent restarted with its runtime directory removed, in the middle of requests.

systemd removes a service's RuntimeDirectory whenever the service stops,
automatic restarts included, while cold processes and finishing workers may
hold attachment locks. Here the lock files are put in the directory that is
removed (CALICO_PY_ATTACHMENT_LOCKS), as the shipped layout once had them, so
the removal pulls a held lock's file away. Each trial: a cold ADD takes its
attachment lock and waits on the store lock (held by the test); the agent is
SIGKILLed, its runtime directory removed and the agent started again, as
the unit restarts it; the runtime's retry of the ADD goes through the new
agent; the store lock is let go at a seeded moment. Whatever both answer,
the node must be sound: no address held that the pod is not wired with, no
address wired that the store does not hold, and nothing left after DEL.

A second test checks the layout itself: the default lock directory is not
under the installed unit's RuntimeDirectory.

CALICO_PY_ATTACK_SEED picks the moments, CALICO_PY_LOCK_TRIALS the trials.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from cni_calico_py.core import attachment_lock
from tests.attack.driver import AgentWorkers, Answer, NodeThreads, Plugin, RoundLog
from tests.attack.invariants import (
    NETWORK,
    Attachment,
    Snapshot,
    leftovers,
    state_of,
    violations,
    wired_as_answered,
)
from tests.attack.scrub import plugin_log_of, scrub
from tests.cni_calls import BLOCK_V4, netconf
from tests.netns import Node, agent_status, running_agent

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
TRIALS = int(os.environ.get("CALICO_PY_LOCK_TRIALS", "30"))
SHOWN = 4


def test_attachment_locks_live_outside_the_agents_runtime_directory(installed: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(installed / "lib" / "systemd" / "system" / "calico-py-agent.service")
    runtime = unit["Service"].get("RuntimeDirectory", "")
    assert runtime, "the agent's unit names no RuntimeDirectory: update this test"
    removed = [Path("/run") / name for name in runtime.split()]
    locks = Path(attachment_lock.DEFAULT_DIRECTORY)
    assert not any(locks.is_relative_to(r) for r in removed), (
        f"attachment locks in {locks}, under the RuntimeDirectory {runtime} that systemd "
        "removes when the agent stops")


def test_agent_restarted_with_its_runtime_directory_removed(bare_node: Node, exe: str,
                                                            installed_bin: Path,
                                                            tmp_path: Path) -> None:
    node = bare_node
    node.add_pods(2)
    pods = list(node.pods)
    runtime = tmp_path / "run-calico-py"
    socket = str(runtime / "agent.sock")
    lock_env = {attachment_lock.DIRECTORY_ENV: str(runtime / "attachments")}
    plugin_log = tmp_path / "cni.log"
    conf = netconf(tmp_path, log_level="info", log_file_path=str(plugin_log))
    store = tmp_path / NETWORK
    rng = random.Random(f"{SEED}:runtime-dir")
    token = uuid.uuid4().hex[:6]
    outcomes: Counter[str] = Counter()
    shown: list[str] = []
    started = time.monotonic()
    with ExitStack() as stack:
        threads = NodeThreads(node.path)
        stack.callback(threads.close)
        cold = Plugin(threads, exe, conf, str(installed_bin), None, lock_env)
        warm = Plugin(threads, exe, conf, str(installed_bin), socket, lock_env)
        agents = ExitStack()
        stack.callback(agents.close)

        def start_agent() -> AgentWorkers:
            runtime.mkdir(mode=0o700, exist_ok=True)
            process = agents.enter_context(
                running_agent(node, exe, socket, log_path=str(tmp_path / "agent.log"),
                              env={**os.environ, **lock_env}))
            status = agent_status(exe, socket)
            assert status is not None, "the agent does not answer status"
            return AgentWorkers(process.pid, int(status["workers"]))

        workers = start_agent()
        typical = cold.typical_seconds(pods[:1], cycles=1)["ADD"]
        trial = 0
        for trial in range(TRIALS):
            who = Attachment(f"rd{token}t{trial:03d}", pods[trial % 2])
            release_at = rng.uniform(0, typical) if rng.random() < 0.7 else 0.0
            log = RoundLog(f"trial {trial} (seed {SEED}): store lock let go {release_at * 1000:.1f} "
                           "ms after the retry started")
            found: list[str] = []
            answers, workers = _trial(cold, warm, who, store, runtime, lock_env, release_at,
                                      workers, agents, start_agent, log)
            found += cold.misbehaved + warm.misbehaved
            cold.misbehaved.clear()
            warm.misbehaved.clear()
            found += _quiet(workers)
            snap = Snapshot.take(store, node.name, [who.pod], BLOCK_V4)
            found += violations(snap, {who.pod: who})
            state = state_of(snap, who)[0]
            if state.startswith("half"):
                found.append(f"{who}: neither attached nor gone: {state}")
            elif state == "attached":
                for answer in answers:
                    if answer.rc == 0 and answer.address:
                        found += wired_as_answered(snap, who, answer.address)
            outcomes[" + ".join(_short(a) for a in answers) + f" -> {state.split(':')[0]}"] += 1
            if not warm.delete_until_done(who, log):
                found.append(f"{who}: DEL never answered 0")
            found += _quiet(workers)
            found += leftovers(Snapshot.take(store, node.name, [who.pod], BLOCK_V4))
            if found:
                shown.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found)
                             + plugin_log_of(plugin_log, found))
                _quiet(workers)
                scrub(node.name, pods, store)
                if len(shown) >= SHOWN:
                    break
    summary = (f"{trial + 1} trials in {time.monotonic() - started:.1f} s, seed {SEED}; typical cold "
               f"ADD {typical * 1000:.1f} ms; outcomes {dict(sorted(outcomes.items()))}")
    print(summary)
    assert not shown, f"{summary}\n{len(shown)} trial(s) broke an invariant:\n\n" + "\n\n".join(shown)


def _trial(cold: Plugin, warm: Plugin, who: Attachment, store: Path, runtime: Path,
           lock_env: dict[str, str], release_at: float, workers: AgentWorkers, agents: ExitStack,
           start_agent: Callable[[], AgentWorkers], log: RoundLog) -> tuple[list[Answer], AgentWorkers]:
    store.mkdir(parents=True, exist_ok=True)
    store_lock = os.open(store / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(store_lock, fcntl.LOCK_EX)
        first = cold.start("ADD", who)
        log.add(f"{who}: cold ADD started (pid {first.pid}); the store lock is held")
        _wait_for_lock_file(who, lock_env)
        log.add("it holds its attachment lock; SIGKILL the agent, remove its runtime directory")
        os.kill(workers.agent_pid, 9)
        agents.close()
        shutil.rmtree(runtime, ignore_errors=True)
        workers = start_agent()
        log.add(f"agent restarted (pid {workers.agent_pid}); the runtime retries the ADD")
        retry = warm.start("ADD", who)
        if release_at:
            time.sleep(release_at)
    finally:
        os.close(store_lock)
    log.add("store lock let go")
    answers = []
    for process, plugin in ((first, cold), (retry, warm)):
        answer = process.wait()
        plugin.threads.live.discard(process)
        plugin.judge(who, answer, killed_by_us=False)
        log.add(f"{who}: {'cold' if plugin is cold else 'retry'} {answer}")
        answers.append(answer)
    return answers, workers


def _wait_for_lock_file(who: Attachment, lock_env: dict[str, str]) -> None:
    directory = lock_env[attachment_lock.DIRECTORY_ENV]
    saved = os.environ.get(attachment_lock.DIRECTORY_ENV)
    os.environ[attachment_lock.DIRECTORY_ENV] = directory
    try:
        path = attachment_lock.lock_path(NETWORK, who.container_id, who.ifname)
    finally:
        if saved is None:
            del os.environ[attachment_lock.DIRECTORY_ENV]
        else:
            os.environ[attachment_lock.DIRECTORY_ENV] = saved
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"the cold ADD never made its lock file {path}"
        time.sleep(0.001)
    time.sleep(0.02)  # from the lock to the store lock's wait


def _quiet(workers: AgentWorkers) -> list[str]:
    problem = workers.wait_quiet()
    return [problem] if problem else []


def _short(answer: Answer) -> str:
    return f"{answer.verb} {answer.rc}" + (f"/{answer.code}" if answer.code is not None else "")
