"""Datastore load at scale, with simulated nodes: `sudo <venv>/bin/python -m bench cluster-sim`.

Real nodes need a namespace, BIRD or VXLAN and a daemon each, which two cores
cannot run by the hundred. What grows with the cluster is the datastore's
side: every node registers, claims a block, keeps its liveness, and watches
every node's record and block. So each simulated node does exactly that,
through the datastore interface the daemon uses (registry, BlockOwnership, a
watch per kind), with no kernel state, all of them in this one process.

For N = --nodes (e.g. 50,100,250,500) it starts N simulated nodes, waits
until each has seen every block, and measures:
- idle: the datastore server's CPU (% of a core) and requests and writes per
  minute (writes without liveness renewals);
- join propagation: from the start of a new node's claim (a pending
  affinity, then the block) until every simulated node's watch has
  delivered the block, p50 and max over
  --joins joins. The watches are read in this one Python process, so the
  figure includes its own work: an upper bound.
Rows go to <out>/<name>.json (by datastore and N) and <name>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from cni_calico_py.cluster.watch import Watch
from cni_calico_py.datastore.backend import Backend
from cni_calico_py.datastore.errors import DatastoreError
from cni_calico_py.datastore.model import BLOCK, NODE, Block, NodeRecord, WatchEvent
from cni_calico_py.datastore.ownership import BlockOwnership
from cni_calico_py.datastore.registry import register
from tests.cluster.stores import EtcdStore, KubernetesStore, Store, running_store
from tests.cluster.topology import underlay
from tests.netns import inside, wait_for

from . import startup

REPO = Path(__file__).resolve().parent.parent
POOL = IPv4Network("10.128.0.0/12")
OnBlock = Callable[[str, IPv4Network, float], None]
Say = startup.Say


@dataclass
class SimRow:
    datastore: str
    nodes: int
    start_s: float = 0.0
    join_s: list[float] = field(default_factory=list)
    server_cpu_pct: float = 0.0
    requests_per_min: float = 0.0
    writes_per_min: float = 0.0
    idle_seconds: float = 0.0


class SimNode:
    """One node as the datastore sees it: a record, a block, a liveness, two watches."""

    def __init__(self, name: str, client: Backend, on_block: OnBlock) -> None:
        self.name = name
        self.client = client
        self.on_block = on_block
        self.watches: list[Watch] = []
        self.lease = client.liveness(name, 60)

    def join(self) -> IPv4Network:
        self.lease.renew()
        block = BlockOwnership(self.client).claim(self.name, POOL, 26)
        register(self.client, NodeRecord(self.name, "10.0.0.1/24", 64512, "66:00:00:00:00:01"))
        return block

    def follow(self) -> None:
        for kind in (NODE, BLOCK):
            revision = self.client.list(kind).revision
            watch = Watch(self.client, kind, revision, self._events, lambda _reason: None)
            watch.start()
            self.watches.append(watch)

    def _events(self, events: list[WatchEvent]) -> None:
        now = time.monotonic()
        for event in events:
            if isinstance(event.value, Block):
                self.on_block(self.name, event.value.cidr, now)

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()


class Seen:
    """When each simulated node's watch delivered each block."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[IPv4Network, dict[str, float]] = {}

    def __call__(self, node: str, block: IPv4Network, now: float) -> None:
        with self.lock:
            self.at.setdefault(block, {}).setdefault(node, now)

    def by_all(self, block: IPv4Network, names: list[str]) -> float | None:
        with self.lock:
            seen = self.at.get(block, {})
            return max(seen[n] for n in names) if all(n in seen for n in names) else None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pid(store: Store) -> int:
    if isinstance(store, KubernetesStore):
        return store.cp.processes["kube-apiserver"].pid
    assert isinstance(store, EtcdStore) and store.server.pid is not None
    return store.server.pid


def measure(kind: str, n: int, args: argparse.Namespace, say: Say) -> SimRow:
    row = SimRow(kind, n)
    with tempfile.TemporaryDirectory(prefix="calico-py-sim-") as tmp, underlay() as ul, \
            running_store(kind, ul, Path(tmp)) as store, inside(ul.netns):
        seen = Seen()
        stop = threading.Event()
        nodes = [SimNode(f"sim-{i:04d}", store.client(), seen) for i in range(n)]
        started = time.monotonic()
        try:
            # Renewals from the start, as each daemon renews from its first second: a slow
            # start must not let the first nodes' liveness lapse.
            threading.Thread(target=_renew, args=(nodes, stop), daemon=True).start()
            blocks = [node.join() for node in nodes]
            for node in nodes:
                node.follow()
            names = [node.name for node in nodes]
            # Every node has seen every block: by its watch, or already in its list.
            with seen.lock:
                for node in nodes:
                    for block in blocks:
                        seen.at.setdefault(block, {}).setdefault(node.name, started)
            row.start_s = time.monotonic() - started
            say(f"{kind} N={n}: joined and following in {row.start_s:.1f} s")
            time.sleep(args.settle)
            pid = _server_pid(store)
            cpu0, req0, wr0, t0 = _cpu_seconds(pid), store.requests(), store.writes(), time.monotonic()
            time.sleep(args.idle)
            elapsed = time.monotonic() - t0
            row.idle_seconds = elapsed
            row.server_cpu_pct = 100 * (_cpu_seconds(pid) - cpu0) / elapsed
            # The reads at each end of the window are the benchmark's own.
            row.requests_per_min = max(store.requests() - req0 - 2, 0) * 60 / elapsed
            row.writes_per_min = (store.writes() - wr0) * 60 / elapsed
            say(f"idle: server {row.server_cpu_pct:.1f} % CPU, {row.requests_per_min:.0f} requests/min, "
                f"{row.writes_per_min:.0f} writes/min")
            for k in range(args.joins):
                newcomer = SimNode(f"new-{k:03d}", store.client(), seen)
                created = time.monotonic()  # the block is created within the claim
                block = BlockOwnership(newcomer.client).claim(newcomer.name, POOL, 26)
                wait_for(lambda block=block: seen.by_all(block, names) is not None,
                         timeout=args.timeout, interval=0.01, what=f"every node seeing {block}")
                row.join_s.append((seen.by_all(block, names) or created) - created)
            say(f"join propagation p50 {statistics.median(row.join_s):.3f} s, "
                f"max {max(row.join_s):.3f} s over {args.joins}")
        finally:
            stop.set()
            for node in nodes:
                node.stop()
    return row


def _renew(nodes: list[SimNode], stop: threading.Event) -> None:
    """Every node's liveness, renewed as a daemon renews it: a third of its 60 s lease."""
    while not stop.wait(20):
        for node in nodes:
            with contextlib.suppress(DatastoreError):
                node.lease.renew()


def render(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"`{command}`", "",
             "| datastore | simulated nodes | start (s) | join seen by all p50 / max (s) "
             "| server CPU idle (% of a core) | requests/min idle | writes/min idle |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["datastore"], r["nodes"])):
        joins = r["join_s"] or [0.0]
        lines.append(f"| {r['datastore']} | {r['nodes']} | {r['start_s']:.1f} "
                     f"| {statistics.median(joins):.3f} / {max(joins):.3f} "
                     f"| {r['server_cpu_pct']:.1f} | {r['requests_per_min']:.0f} "
                     f"| {r['writes_per_min']:.0f} |")
    return "\n".join(lines) + "\n"



def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench cluster-sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datastore", default="kubernetes", help="etcd, kubernetes, or both (comma-separated)")
    p.add_argument("--nodes", default="50,100,250,500", help="simulated node counts")
    p.add_argument("--joins", type=int, default=10, help="joins measured per N")
    p.add_argument("--idle", type=float, default=60, help="seconds of the idle window")
    p.add_argument("--settle", type=float, default=5, help="seconds before the idle window")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for a join to propagate")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    p.add_argument("--name", default="cluster-sim", help="file name (without suffix) of the outputs")
    args = p.parse_args(argv)
    say = startup.begin()

    results = args.out / f"{args.name}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for kind in args.datastore.split(","):
            for n in (int(x) for x in args.nodes.split(",") if x.strip()):
                row = measure(kind.strip(), n, args, say)
                rows = json.loads(results.read_text()) if results.exists() else []
                rows = [r for r in rows if (r["datastore"], r["nodes"]) != (row.datastore, row.nodes)]
                results.write_text(json.dumps([*rows, asdict(row)], indent=1) + "\n")
    except KeyboardInterrupt:
        print("interrupted: the namespaces and temporary files are removed", file=sys.stderr)
        return 130
    text = render(json.loads(results.read_text()), f"python -m bench cluster-sim {' '.join(argv)}")
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0
