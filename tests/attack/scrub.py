"""After a broken round: the plugin's own account of it, and a clean node for the next round."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from tests.attack.invariants import NOT_RECORDS, VETH_PREFIX, ip_json


def scrub(node: str, pods: Iterable[str], store: Path) -> None:
    for link in ip_json(node, "link", "show"):
        if str(link.get("ifname", "")).startswith(VETH_PREFIX):
            _ip(node, "link", "del", str(link["ifname"]))
    for pod in pods:
        for link in ip_json(pod, "link", "show"):
            if link.get("ifname") != "lo":
                _ip(pod, "link", "del", str(link["ifname"]))
    with suppress(FileNotFoundError):
        for name in os.listdir(store):
            if not name.startswith(NOT_RECORDS):
                with suppress(FileNotFoundError):
                    os.unlink(store / name)


def _ip(netns: str, *args: str) -> None:
    # A link gone meanwhile (its peer was deleted first) is no error here.
    subprocess.run(["ip", "-n", netns, *args], capture_output=True, timeout=30)


def plugin_log_of(path: Path, violations: Iterable[str], limit: int = 60) -> str:
    """The plugin's log lines about the containers the violations name (pid, time, step)."""
    named = set(re.findall(r"\b(k[0-9a-f]+r\d+p\d+|race[0-9a-f]+t\d+)\b", " ".join(violations)))
    if not named:
        return ""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    mine = [line for line in lines if any(f"{cid} " in line or f"={cid} " in line or f"{cid}:" in line
                                           for cid in named)]
    return (f"\n  the plugin's log ({path}) on {', '.join(sorted(named))}:\n"
            + "\n".join(f"    {line}" for line in mine[-limit:]))
