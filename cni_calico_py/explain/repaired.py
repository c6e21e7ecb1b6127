"""A hop's note that the node's repairs just put its object back, from the repair journal."""

from __future__ import annotations

from ..core.repairs import Repair, last_for

# How long after a repair a hop still mentions it.
WITHIN = 300.0


def note(key: str, repairs: list[Repair], now: float) -> str:
    """" (repaired N s ago: <found>; <done>)" for the latest repair of `key`, or ""."""
    repair = last_for(key, repairs)
    if repair is None or repair.age(now) > WITHIN:
        return ""
    return f" (repaired {max(0, round(repair.age(now)))} s ago: {repair.found}; {repair.done})"
