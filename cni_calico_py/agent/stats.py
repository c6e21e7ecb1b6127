"""What the agent has served, for `calico-py agent status`."""

from __future__ import annotations

import time
from collections import Counter, deque
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


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2)}
