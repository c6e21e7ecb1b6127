"""An explanation as people read it (one numbered hop per line) or as JSON for tools."""

from __future__ import annotations

import json
from typing import TextIO

from .walk import Explanation


def write(explanation: Explanation, as_json: bool, out: TextIO) -> int:
    """Print it; 0 when every hop is as it should be, 1 when one is broken."""
    if as_json:
        out.write(json.dumps(explanation.to_json(), indent=2) + "\n")
        return 1 if explanation.broken else 0
    out.write(f"{explanation.src} -> {explanation.dst}, seen from node {explanation.node} "
              f"({_mode(explanation.mode)})\n")
    for number, hop in enumerate(explanation.hops, 1):
        out.write(f"{number:>2}. [{hop.where}] {hop.what}\n")
        if hop.problem:
            out.write(f"    BROKEN: {hop.problem}\n")
    broken = explanation.broken
    if not broken:
        out.write("path: ok\n")
        return 0
    number, first = broken[0]
    out.write(f"path: broken at hop {number} ({first.where}): {first.problem}\n")
    return 1


def _mode(mode: str) -> str:
    return {"Off": "BGP, no encapsulation"}.get(mode, mode)
