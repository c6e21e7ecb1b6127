"""The node's recent repairs: what the agent and the node daemon put back, and why.

Both follow the kernel's rtnetlink notifications and put back what the
node's records say should exist when something else removed or changed it.
Each repair is logged and appended here, one JSON object a line, so that
`calico-py explain` can say that a hop it shows was just repaired, and an
operator can see what keeps breaking (`calico-py repairs`).

A line is appended with O_APPEND in one write (a few hundred bytes, so
writers never interleave inside a line); the file is cut to its last
KEEP lines when it passes twice that. It lives on tmpfs (the runtime
directory): repairs matter for minutes, not across a boot.
CALICO_PY_REPAIRS names another file, `off` keeps none.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass

from . import files

PATH_ENV = "CALICO_PY_REPAIRS"
DEFAULT_PATH = "/run/calico-py/repairs.jsonl"
KEEP = 500
_LINE_LIMIT = 2048


@dataclass(frozen=True)
class Repair:
    at: float  # seconds since the epoch
    by: str  # "agent" or "node"
    what: str  # the kind of object: route, link, sysctl, blackhole, fdb, neigh, device
    key: str  # what explain matches on: a route's destination ("10.0.0.5/32") or a device name
    found: str  # what was wrong
    done: str  # what was done about it

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.at


def path() -> str | None:
    value = os.environ.get(PATH_ENV) or DEFAULT_PATH
    return None if value == "off" else value


def record(by: str, what: str, key: str, found: str, done: str) -> Repair:
    """Append one repair; a journal that cannot be written loses the line, never the repair."""
    repair = Repair(time.time(), by, what, key, found, done)
    target = path()
    if target is None:
        return repair
    line = (json.dumps(asdict(repair), separators=(",", ":"))[:_LINE_LIMIT] + "\n").encode()
    with suppress(OSError):
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > 2 * KEEP * 200:
            _trim(target)
    return repair


def _trim(target: str) -> None:
    kept = list(_lines(target))[-KEEP:]
    files.replace(target, "".join(line + "\n" for line in kept), durable=False, mode=0o600)


def _lines(target: str) -> Iterator[str]:
    try:
        with open(target, encoding="utf-8", errors="replace") as src:
            yield from (line.rstrip("\n") for line in src if line.strip())
    except OSError:
        return


def recent(within: float = 300.0, now: float | None = None) -> list[Repair]:
    """The repairs of the last `within` seconds, oldest first; unreadable lines are skipped."""
    target = path()
    if target is None:
        return []
    now = time.time() if now is None else now
    found = []
    for line in _lines(target):
        try:
            repair = Repair(**json.loads(line))
        except (ValueError, TypeError):
            continue
        if repair.age(now) <= within:
            found.append(repair)
    return found


def last_for(key: str, repairs: list[Repair]) -> Repair | None:
    """The latest repair of `key` among `repairs`."""
    return next((r for r in reversed(repairs) if r.key == key), None)
