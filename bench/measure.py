"""The measurements: latency per verb, peak RSS, burst, growth with occupancy.

Every phase interleaves the variants (their order rotates each round), so
whatever else the machine is doing hits all of them alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import node, spawn
from .variants import Variant, store_leftovers

VERBS = ("ADD", "CHECK", "DEL")
FILL_CONCURRENCY = 8


@dataclass
class Pod:
    variant: Variant
    netns: str
    container_id: str
    result: dict[str, Any] | None = None

    def job(self, command: str) -> tuple[list[str], dict[str, str], bytes]:
        prev = self.result if command != "ADD" else None
        return ([self.variant.exe], self.variant.env(command, self.container_id, self.netns),
                self.variant.stdin(prev))


@dataclass
class Burst:
    size: int
    add_wall: float = 0.0
    del_wall: float = 0.0
    add_failures: int = 0
    del_failures: int = 0
    distinct: int = 0
    store_left: list[str] = field(default_factory=list)
    routes_left: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.add_failures and not self.del_failures and self.distinct == self.size
                and not self.store_left and not self.routes_left)


@dataclass
class Results:
    latency: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    rss_kib: dict[str, list[int]] = field(default_factory=dict)
    growth: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    burst: dict[str, list[Burst]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)


def rotated(items: Sequence[Variant], turn: int) -> list[Variant]:
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


def address_of(result: dict[str, Any] | None) -> str | None:
    try:
        return str(result["ips"][0]["address"]) if result else None
    except (KeyError, IndexError, TypeError):
        return None


class Bench:
    def __init__(self, variants: Sequence[Variant], pools: dict[str, list[str]]) -> None:
        self.variants = list(variants)
        self.pools = pools
        self.results = Results()
        self._serial = 0

    def pod(self, variant: Variant, slot: int) -> Pod:
        self._serial += 1
        return Pod(variant, self.pools[variant.key][slot], f"bench{variant.key}{self._serial:05d}")

    def _fail(self, pod: Pod, command: str, outcome: spawn.Outcome) -> None:
        text = (outcome.stdout or outcome.stderr).decode(errors="replace").strip().replace("\n", " ")
        self.results.failures.setdefault(pod.variant.key, []).append(
            f"{command} {pod.container_id}: rc={outcome.rc} {text[:300]}")

    def call(self, pod: Pod, command: str) -> spawn.Outcome:
        outcome = spawn.run(*pod.job(command))
        self._record(pod, command, outcome)
        return outcome

    def _record(self, pod: Pod, command: str, outcome: spawn.Outcome) -> None:
        if not outcome.ok:
            self._fail(pod, command, outcome)
        elif command == "ADD":
            pod.result = json.loads(outcome.stdout)

    def calls(self, pods: Sequence[Pod], command: str) -> list[spawn.Outcome]:
        outcomes = spawn.run_many([p.job(command) for p in pods])
        for pod, outcome in zip(pods, outcomes, strict=True):
            self._record(pod, command, outcome)
        return outcomes

    def latency(self, rounds: int, between: Callable[[int], None] | None = None) -> None:
        """ADD, CHECK and DEL of one pod per variant per round; the block is empty at each ADD.

        `between(turn)` runs before each round: other measurements placed
        there meet the same machine noise as the rounds around them.
        """
        for turn in range(rounds):
            if between is not None:
                between(turn)
            order = rotated(self.variants, turn)
            pods = {v.key: self.pod(v, 0) for v in order}
            for command in VERBS:
                for variant in order:
                    pod = pods[variant.key]
                    if command == "CHECK" and pod.result is None:
                        continue  # its ADD failed (recorded); DEL still cleans up
                    outcome = self.call(pod, command)
                    if outcome.ok:
                        per_verb = self.results.latency.setdefault(variant.key, {})
                        per_verb.setdefault(command, []).append(outcome.seconds)
                        if command == "ADD":
                            self.results.rss_kib.setdefault(variant.key, []).append(outcome.maxrss_kib)

    def _fill(self, variant: Variant, slots: range) -> list[Pod]:
        pods = [self.pod(variant, slot) for slot in slots]
        for start in range(0, len(pods), FILL_CONCURRENCY):
            self.calls(pods[start:start + FILL_CONCURRENCY], "ADD")
        return pods

    def _empty(self, pods: Sequence[Pod]) -> None:
        for start in range(0, len(pods), FILL_CONCURRENCY):
            self.calls(pods[start:start + FILL_CONCURRENCY], "DEL")

    def growth(self, levels: Sequence[int], samples: int) -> None:
        """ADD latency of one more pod when the block already holds `level` pods."""
        filled: dict[str, list[Pod]] = {v.key: [] for v in self.variants}
        spare = max(levels)
        for level in sorted(levels):
            for variant in self.variants:
                have = len(filled[variant.key])
                filled[variant.key] += self._fill(variant, range(have, level))
            for turn in range(samples):
                for variant in rotated(self.variants, turn):
                    pod = self.pod(variant, spare)
                    outcome = self.call(pod, "ADD")
                    if outcome.ok:
                        per_level = self.results.growth.setdefault(variant.key, {})
                        per_level.setdefault(level, []).append(outcome.seconds)
                    self.call(pod, "DEL")
        for variant in self.variants:
            self._empty(filled[variant.key])

    def burst(self, size: int, rounds: int) -> None:
        """`size` ADDs started at once, then `size` DELs at once; checks addresses and the store."""
        for turn in range(rounds):
            for variant in rotated(self.variants, turn):
                self.results.burst.setdefault(variant.key, []).append(self._one_burst(variant, size))

    def _one_burst(self, variant: Variant, size: int) -> Burst:
        burst = Burst(size)
        pods = [self.pod(variant, slot) for slot in range(size)]
        added = self.calls(pods, "ADD")
        burst.add_wall = max(o.ended for o in added) - min(o.started for o in added)
        burst.add_failures = sum(not o.ok for o in added)
        burst.distinct = len({a for a in map(address_of, (p.result for p in pods)) if a})
        deleted = self.calls(pods, "DEL")
        burst.del_wall = max(o.ended for o in deleted) - min(o.started for o in deleted)
        burst.del_failures = sum(not o.ok for o in deleted)
        burst.store_left = store_leftovers(variant)
        burst.routes_left = node.routes_in(variant.block)
        return burst
