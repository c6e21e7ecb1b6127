"""Two requests for one attachment (container ID, ifname, netns) at once: ADD+DEL and ADD+ADD.

Runtimes do this: a DEL for an ADD they gave up on, a retried ADD while the
first still runs. Whatever the interleaving, the attachment must end either
fully attached and reserved (the pod's eth0 holds the reserved address and
the node routes it to the host veth) or fully gone (no record, no veth, no
route); after ADD+ADD it holds at most one address, the one the pod is wired
with and any successful ADD answered. A DEL then leaves nothing behind.

Half of the trials start both requests at the same moment; the other half
start the second after a seeded delay of up to half an ADD, to reach other
interleavings. CALICO_PY_ATTACK_SEED picks orders and delays,
CALICO_PY_RACE_TRIALS the number of trials.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.attack.driver import Answer, RoundLog
from tests.attack.harness import Harness, harness
from tests.attack.invariants import Attachment, leftovers, state_of, violations, wired_as_answered
from tests.attack.scrub import plugin_log_of, scrub
from tests.netns import Node

pytestmark = pytest.mark.netns

SEED = int(os.environ.get("CALICO_PY_ATTACK_SEED", "20261201"))
TRIALS = int(os.environ.get("CALICO_PY_RACE_TRIALS", "100"))
PODS = 4
SHOWN_TRIALS = 4  # trials with violations printed in full; the test stops after this many


@pytest.fixture(params=["cold", "agent"])
def racing_node(request: pytest.FixtureRequest, bare_node: Node, exe: str, installed_bin: Path,
                tmp_path: Path) -> Iterator[Harness]:
    with harness(request.param, bare_node, exe, str(installed_bin), tmp_path, PODS,
                 agent=request.param == "agent") as made:
        yield made


@pytest.mark.parametrize("pair", [("ADD", "DEL"), ("ADD", "ADD")], ids=["add+del", "add+add"])
def test_one_attachment_twice_at_once(racing_node: Harness, pair: tuple[str, str]) -> None:
    h = racing_node
    started = time.monotonic()
    rng = random.Random(f"{SEED}:{h.mode}:{'+'.join(pair)}")
    typical = h.plugin.typical_seconds(h.pods[:2], cycles=1)
    token = uuid.uuid4().hex[:6]
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for trial in range(TRIALS):
        who = Attachment(f"race{token}t{trial:03d}", h.pods[trial % PODS])
        order = list(pair) if rng.random() < 0.5 else list(reversed(pair))
        lag = 0.0 if rng.random() < 0.5 else rng.uniform(0, typical["ADD"] / 2)
        log = RoundLog(f"trial {trial} ({h.mode}, seed {SEED}): {order[0]}, then {order[1]} "
                       f"{lag * 1000:.1f} ms later")
        answers = h.threads.run_all([partial(_call, h, order[0], who, 0.0, log),
                                     partial(_call, h, order[1], who, lag, log)])
        found, state = _judge(h, pair, who, answers)
        outcomes[" + ".join(sorted(_short(a) for a in answers)) + f" -> {state.split(':')[0]}"] += 1
        log.add(f"end state: {state}; now DEL")
        if not h.plugin.delete_until_done(who, log):
            found.append(f"{who}: DEL never answered 0")
        h.quiet(found)
        snap = h.snapshot()
        found += violations(snap, {who.pod: who}) + leftovers(snap) + h.plugin.misbehaved
        h.plugin.misbehaved.clear()
        if found:
            failures.append(f"{log}\n  violations:\n" + "\n".join(f"    - {v}" for v in found)
                            + plugin_log_of(h.plugin_log, found))
            h.quiet([])
            scrub(h.node.name, h.pods, h.store)
            if len(failures) >= SHOWN_TRIALS:
                break
    summary = (f"{h.mode} {'+'.join(pair)}: {trial + 1} trials in {time.monotonic() - started:.1f} s, "
               f"seed {SEED}; outcomes {dict(sorted(outcomes.items()))}")
    print(summary)
    assert not failures, (f"{summary}\n{len(failures)} trial(s) broke an invariant (the run stops "
                          f"after {SHOWN_TRIALS}):\n\n" + "\n\n".join(failures))


def _call(h: Harness, verb: str, who: Attachment, lag: float, log: RoundLog) -> Answer:
    if lag:
        time.sleep(lag)
    log.add(f"{who}: {verb} started")
    answer = h.plugin.call(verb, who)
    log.add(f"{who}: {answer}")
    return answer


def _judge(h: Harness, pair: tuple[str, str], who: Attachment, answers: list[Answer]) -> tuple[
        list[str], str]:
    """What is wrong with the end state of one trial, and that state."""
    found: list[str] = []
    h.quiet(found)
    snap = h.snapshot([who.pod])
    found += violations(snap, {who.pod: who})
    state, _ = state_of(snap, who)
    if state.startswith("half"):
        found.append(f"{who}: the end state is neither fully attached nor fully gone: {state}")
        return found, state
    for answer in answers:
        # After ADD+DEL the DEL may have come last; after ADD+ADD nothing undoes a successful ADD.
        if answer.verb == "ADD" and answer.address and (pair == ("ADD", "ADD") or state == "attached"):
            found += wired_as_answered(snap, who, answer.address)
    return found, state


def _short(answer: Answer) -> str:
    return f"{answer.verb} {answer.rc}" + (f"/{answer.code}" if answer.code is not None else "")
