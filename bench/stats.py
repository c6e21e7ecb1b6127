"""Ratios of the benchmark's figures; percentiles are the agent's own (agent/stats.py)."""

from __future__ import annotations


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference
