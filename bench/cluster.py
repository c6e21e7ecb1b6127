"""The cluster scale benchmark: `sudo <venv>/bin/python -m bench cluster [options]`.

For each configuration (mode, N nodes, full mesh or route reflectors) it makes
an underlay namespace with the datastore (`--datastore etcd`, or `kubernetes`:
etcd and kube-apiserver with Calico's CRDs, the daemons as the node's
ServiceAccount) and N node namespaces (tests/cluster's topology), starts one
node daemon per node at once, and measures:
- converge-all: from the last daemon's start until every node has a route to
  every other node's block (rtnetlink notifications, bench/routewatch.py);
- joins and leaves (alternating, the cluster stays at N): from the new node's
  record appearing in the datastore (and from its daemon's start) until every node
  routes its block; from `node leave` (datastore.registry.remove_node) until no node
  routes it;
- idle: daemon (and BIRD) CPU and RSS per node over a window, the datastore's
  requests (etcd: gRPC messages received; the API server's requests) and
  writes (etcd: revisions; the API server's writes but Lease renewals) per minute.
Rows go to <out>/<name>.json (kept across runs, keyed by --label), and the
whole file is rendered to <name>.md and <name>.png. Everything is removed at
the end, also on failure or Ctrl-C; nothing is sent from the machine's own
namespace (the benchmark thread works inside the underlay namespace).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import yaml

from cni_calico_py.cluster.watch import Watch
from cni_calico_py.datastore.model import NODE, WatchEvent
from cni_calico_py.datastore.registry import remove_node
from tests.cluster.stores import Store, running_store
from tests.cluster.topology import ClusterNode, Underlay, underlay
from tests.netns import inside, wait_for

from . import cluster_report, startup
from .routewatch import RouteWatch

REPO = Path(__file__).resolve().parent.parent
POOL = IPv4Network("192.168.0.0/16")


@dataclass
class Row:
    label: str
    mode: str
    nodes: int
    peering: str  # "mesh", "2 reflectors", or "-" (VXLAN)
    datastore: str = "etcd"
    converge_s: float = 0.0
    join_s: list[float] = field(default_factory=list)
    join_from_start_s: list[float] = field(default_factory=list)
    leave_s: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)  # per daemon, % of one core
    bird_cpu_pct: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    requests_per_min: float = 0.0
    writes_per_min: float = 0.0
    idle_seconds: float = 0.0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Run:
    """One configuration's cluster; the calling thread is inside the underlay namespace."""

    def __init__(self, store: Store, ul: Underlay, work: Path, exe: list[str], mode: str,
                 settings: dict[str, object]):
        self.store, self.work, self.exe, self.mode, self.settings = store, work, exe, mode, settings
        self.ul = ul
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.routes = RouteWatch(POOL)
        self.seen: dict[str, float] = {}
        self.backend = store.client()

    def add(self, index: int, **extra: object) -> ClusterNode:
        node = self.ul.add_node(index)
        self.routes.add(node.name, node.netns)
        d = self.work / node.name
        d.mkdir()
        self.store.node_joins(node.name)
        conf = {**self.store.node_settings(), "pool": str(POOL), "nodename": node.name,
                "encapsulation": self.mode, "ip_autodetection": f"can-reach={self.ul.gateway}",
                "state_file": str(d / "node-state.json"), "cni_conflist": str(d / "none.conflist"),
                "bird_dir": str(d / "bird"), "mtu_file": str(d / "mtu"), **self.settings, **extra}
        (d / "node.yaml").write_text(yaml.safe_dump(conf))
        return node

    def start(self, node: ClusterNode) -> None:
        d = self.work / node.name
        with open(d / "daemon.log", "ab") as log:
            self.procs[node.name] = subprocess.Popen(
                ["ip", "netns", "exec", node.name, *self.exe, "node", "run", "--config",
                 str(d / "node.yaml")], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def block(self, node: ClusterNode) -> IPv4Network:
        path = self.work / node.name / "node-state.json"
        wait_for(lambda: path.exists(), timeout=120, what=f"{node.name}'s node state")
        return IPv4Network(json.loads(path.read_text())["blocks"][0])

    def bird_pids(self) -> dict[str, int]:
        found = {}
        for name in self.procs:
            with suppress(OSError, ValueError):
                found[name] = int((self.work / name / "bird" / "bird.pid").read_text())
        return found

    def on_events(self, events: list[WatchEvent]) -> None:
        now = time.monotonic()
        for event in events:
            key = str(event.key)
            self.seen.setdefault(key if event.value is not None else "-" + key, now)

    def counts(self) -> tuple[float, int]:
        """Requests the datastore received so far, and its writes."""
        return self.store.requests(), self.store.writes()

    def stop(self, node: ClusterNode) -> None:
        proc = self.procs.pop(node.name)
        proc.terminate()
        proc.wait(30)


Say = startup.Say


def _measure(run: Run, row: Row, n: int, reflectors: int, args: argparse.Namespace, say: Say) -> None:
    nodes = [run.add(i, **({"route_reflector_cluster_id": "224.0.0.1"} if i <= reflectors else {}))
             for i in range(1, n + 1)]
    for node in nodes:
        run.start(node)
    last_start = time.monotonic()
    say(f"{row.mode} N={n} {row.peering}: {n} daemons started; waiting for every route")
    try:
        wait_for(lambda: all(run.routes.count(x.name) >= n - 1 for x in nodes), timeout=args.timeout,
                 interval=0.05, what="every node routing every other node's block")
    except AssertionError:
        counts = {x.name: run.routes.count(x.name) for x in nodes}
        raise AssertionError(f"routes seen per node: {counts}; route reader: "
                             f"{run.routes.failed or 'running'}") from None
    blocks = {x.name: run.block(x) for x in nodes}
    row.converge_s = max(run.routes.added(x.name, blocks[y.name]) or 0 for x in nodes for y in nodes
                         if x is not y) - last_start
    say(f"converged {row.converge_s:.2f} s after the last start; idle for {args.idle:g} s")
    time.sleep(args.settle)
    pids = {name: p.pid for name, p in run.procs.items()}
    birds = run.bird_pids()
    cpu0 = {k: _cpu(p) for k, p in pids.items()}
    bird0 = {k: _cpu(p) for k, p in birds.items()}
    req0, rev0 = run.counts()
    t0 = time.monotonic()
    time.sleep(args.idle)
    req1, rev1 = run.counts()
    elapsed = time.monotonic() - t0
    row.idle_seconds = elapsed
    row.cpu_pct = [100 * (_cpu(p) - cpu0[k]) / elapsed for k, p in pids.items()]
    row.bird_cpu_pct = [100 * (_cpu(p) - bird0[k]) / elapsed for k, p in birds.items()]
    row.rss_mib = [_rss_mib(p) for p in pids.values()]
    # The reads at each end of the window are requests of the benchmark's own.
    row.requests_per_min = max(req1 - req0 - 2, 0) * 60 / elapsed
    row.writes_per_min = (rev1 - rev0) * 60 / elapsed
    say(f"idle: {statistics.mean(row.cpu_pct):.3f} % CPU per daemon, {row.requests_per_min:.0f} "
        f"{row.datastore} requests/min, {row.writes_per_min:.0f} writes/min")
    watch = Watch(run.backend, NODE, run.backend.list(NODE).revision, run.on_events,
                  lambda _reason: None)
    watch.start()
    try:
        for k in range(args.joins):
            _join_and_leave(run, row, nodes, n + 1 + k, args.timeout)
        say(f"joins p50 {statistics.median(row.join_s):.3f} s, leaves p50 "
            f"{statistics.median(row.leave_s):.3f} s over {args.joins}")
    finally:
        watch.stop()


def _join_and_leave(run: Run, row: Row, nodes: list[ClusterNode], index: int, timeout: float) -> None:
    node = run.add(index)
    started = time.monotonic()
    run.start(node)
    block = run.block(node)
    wait_for(lambda: all(run.routes.added(x.name, block) for x in nodes), timeout=timeout,
             interval=0.02, what=f"every node routing {node.name}'s block")
    reached = max(run.routes.added(x.name, block) or 0 for x in nodes)
    registered = run.seen.get(f"{NODE}/{node.name}", started)
    row.join_s.append(reached - registered)
    row.join_from_start_s.append(reached - started)
    wait_for(lambda: run.routes.count(node.name) >= len(nodes), timeout=timeout, interval=0.02,
             what=f"{node.name} routing every other block")
    run.stop(node)
    left = time.monotonic()
    remove_node(run.backend, node.name)
    wait_for(lambda: all(run.routes.removed(x.name, block) for x in nodes), timeout=timeout,
             interval=0.02, what=f"{node.name}'s block unrouted everywhere")
    row.leave_s.append(max(run.routes.removed(x.name, block) or 0 for x in nodes) - left)
    run.routes.remove(node.name)
    for pid in subprocess.run(["ip", "netns", "pids", node.name], capture_output=True,
                              text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)  # its BIRD, in BGP mode


def measure(label: str, mode: str, n: int, reflectors: int, args: argparse.Namespace,
            exe: list[str], say: Say) -> Row:
    peering = "-" if mode.startswith("VXLAN") else f"{reflectors} reflectors" if reflectors else "mesh"
    row = Row(label, mode, n, peering, args.datastore)
    settings = dict(s.split("=", 1) for s in args.set)
    with tempfile.TemporaryDirectory(prefix="calico-py-bench-") as tmp, underlay() as ul, \
            running_store(args.datastore, ul, Path(tmp)) as store, inside(ul.netns):
        work = Path(tmp) / "nodes"
        work.mkdir()
        run = Run(store, ul, work, exe, mode, settings)
        try:
            _measure(run, row, n, reflectors, args, say)
        finally:
            run.routes.close()
            for proc in run.procs.values():
                proc.terminate()
            for proc in run.procs.values():
                proc.wait(30)
    return row


def parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datastore", choices=["etcd", "kubernetes"], default="etcd",
                   help="where the cluster's state lives")
    p.add_argument("--vxlan", default="10,25,50", help="node counts in VXLAN mode")
    p.add_argument("--bgp", default="10,20", help="node counts in BGP mode, full mesh and reflectors")
    p.add_argument("--reflectors", type=int, default=2, help="route reflectors; 0: full mesh only")
    p.add_argument("--joins", type=int, default=10, help="joins (each followed by a leave) per configuration")
    p.add_argument("--idle", type=float, default=60, help="seconds of the idle window")
    p.add_argument("--settle", type=float, default=5, help="seconds between convergence and the idle window")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for any convergence")
    p.add_argument("--exe", default=str(Path(sys.executable).parent / "calico-py"),
                   help="the calico-py to run (a command line, split on spaces)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra node.yaml setting for every node")
    p.add_argument("--label", default="after", help="the rows' label (e.g. before, after)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    p.add_argument("--name", default="cluster", help="file name (without suffix) of the outputs")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")



def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser(p)
    args = p.parse_args(argv)
    say = startup.begin()

    plan = [("VXLAN", int(n), 0) for n in args.vxlan.split(",") if n.strip()]
    for n in (int(x) for x in args.bgp.split(",") if x.strip()):
        plan.append(("Off", n, 0))
        if args.reflectors:
            plan.append(("Off", n, args.reflectors))
    results = args.out / f"{args.name}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for mode, n, reflectors in plan:
            row = measure(args.label, mode, n, reflectors, args, args.exe.split(), say)
            rows = json.loads(results.read_text()) if results.exists() else []
            rows = [r for r in rows if (r["label"], r.get("datastore", "etcd"), r["mode"], r["nodes"],
                                        r["peering"])
                    != (row.label, row.datastore, row.mode, row.nodes, row.peering)] + [asdict(row)]
            results.write_text(json.dumps(rows, indent=1) + "\n")
    except KeyboardInterrupt:
        print("interrupted: the namespaces and temporary files are removed", file=sys.stderr)
        return 130
    rows = json.loads(results.read_text())
    text = cluster_report.render(rows, f"python -m bench cluster {' '.join(argv)}")
    (args.out / f"{args.name}.md").write_text(text)
    if not args.no_plot:
        cluster_report.plot(rows, args.out / f"{args.name}.png")
    print(text)
    return 0
