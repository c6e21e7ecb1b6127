"""What the agent has served, for `calico-py agent status`."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__

_KEEP = 10_000
REPAIR_PREFIX = b"repair "  # a report line of the repairer: what it put back


@dataclass(frozen=True)
class Report:
    """One served request, as a worker tells the agent: one line on a pipe."""

    verb: str
    exit_code: int
    cni_code: int  # 0 when it succeeded
    millis: float
    lock_wait_millis: float

    def line(self) -> bytes:
        return (f"{self.verb} {self.exit_code} {self.cni_code} {self.millis:.3f} "
                f"{self.lock_wait_millis:.3f}\n").encode()

    @classmethod
    def parse(cls, line: bytes) -> Report:
        """The report in `line`; ValueError when it is not one."""
        verb, exit_code, cni_code, millis, waited = line.decode().split()
        return cls(verb, int(exit_code), int(cni_code), float(millis), float(waited))


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.served: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.latencies: dict[str, deque[float]] = {}
        self.repairs: Counter[str] = Counter()

    def record_repair(self, what: str) -> None:
        self.repairs[what] += 1

    def record(self, report: Report) -> None:
        self.served[report.verb] += 1
        if report.exit_code != 0:
            self.failed[report.verb] += 1
        self.latencies.setdefault(report.verb, deque(maxlen=_KEEP)).append(report.millis)

    def snapshot(self, pid: int) -> dict[str, Any]:
        return {
            "status": "up",
            "version": __version__,
            "pid": pid,
            "uptime_s": round(time.time() - self.started, 1),
            "served": dict(self.served),
            "failed": dict(self.failed),
            "latency_ms": {verb: percentiles(list(v)) for verb, v in self.latencies.items()},
            "repairs": dict(self.repairs),
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
