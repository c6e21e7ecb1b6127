"""What the agent has served, for `calico-py agent status`."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from .. import __version__

_KEEP = 10_000


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.served: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.latencies: dict[str, deque[float]] = {}

    def record(self, verb: str, exit_code: int, millis: float) -> None:
        self.served[verb] += 1
        if exit_code != 0:
            self.failed[verb] += 1
        self.latencies.setdefault(verb, deque(maxlen=_KEEP)).append(millis)

    def snapshot(self, pid: int) -> dict[str, Any]:
        return {
            "status": "up",
            "version": __version__,
            "pid": pid,
            "uptime_s": round(time.time() - self.started, 1),
            "served": dict(self.served),
            "failed": dict(self.failed),
            "latency_ms": {verb: percentiles(list(v)) for verb, v in self.latencies.items()},
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None if there are no values.

    The benchmark reports with this one too, so its figures and the agent's
    status mean the same thing.
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    found = {name: percentile(values, q) for name, q in (("p50", 50), ("p90", 90), ("p99", 99))}
    return {**{k: round(v, 2) for k, v in found.items() if v is not None},
            "max": round(max(values), 2)}
