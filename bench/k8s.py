"""The plugin on a real Kubernetes cluster: `sudo <venv>/bin/python -m bench k8s BIN_DIR`.

BIN_DIR is a CNI bin dir holding the frozen build (`make install DESTDIR=<d>`:
<d>/opt/cni/bin). For each datastore and mode it brings up the tests' cluster
(tests/k8s: control plane, three nodes with containerd, kubelet and
kube-proxy), installs the plugin with `kubectl apply -f
conf/kubernetes/calico-py.yaml`, and measures:
- a Deployment scaled from 0 to --pods: seconds from the scale until each pod
  is first seen Running, p50 and p95, with the agent and cold (every node's
  containerd restarted with CALICO_PY_AGENT_SOCKET=off, so the plugin runs
  without it);
- the API server's requests (apiserver_request_total) per pod over that
  scale-up: all of them, and those for Calico's resources
  (crd.projectcalico.org: the plugin's own; nodes and leases apart);
- a node joining: from its kubelet's start to every node routing its block
  and it routing theirs.
Rows go to <out>/k8s.json (by datastore and mode) and k8s.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cni_calico_py.agent.stats import percentile
from tests.clients.node_runtime import SANDBOX_IMAGE
from tests.k8s.checks import routed_everywhere
from tests.k8s.cluster import LATE_NODE, KubeCluster
from tests.k8s.install import Installed, build_images, installed_cluster
from tests.k8s.workloads import deployment, pods, time_to_running
from tests.netns import wait_for

from . import startup

REPO = Path(__file__).resolve().parent.parent
COMBINATIONS = (("kubernetes", "bgp"), ("kubernetes", "vxlan"), ("etcd", "bgp"), ("etcd", "vxlan"))
CALICO_GROUP = 'group="crd.projectcalico.org"'


@dataclass
class K8sRow:
    datastore: str
    mode: str
    pods: int
    agent_p50: float
    agent_p95: float
    cold_p50: float
    cold_p95: float
    requests_per_pod: float
    calico_requests_per_pod: float
    join_ready: float
    join_routed: float


def _requests(cluster: KubeCluster) -> tuple[float, float]:
    """(all requests, requests for Calico's resources) the API server has answered."""
    _, text = cluster.control_plane.request("GET", "/metrics")
    total = calico = 0.0
    for line in str(text).splitlines():
        if line.startswith("apiserver_request_total{"):
            value = float(line.rsplit(" ", 1)[1])
            total += value
            calico += value if CALICO_GROUP in line else 0.0
    return total, calico


def _scale_up(kube: Installed, count: int, say: startup.Say) -> tuple[list[float], float, float]:
    cluster = kube.cluster
    cluster.apply(deployment("bench", 0))
    before = _requests(cluster)
    started = time.monotonic()
    cluster.kubectl("scale", "deployment", "bench", f"--replicas={count}")
    running = time_to_running(cluster, "bench", count, started)
    after = _requests(cluster)
    say(f"{count} pods Running: p50 {percentile(running, 50):.2f} s, "
        f"p95 {percentile(running, 95):.2f} s")
    cluster.kubectl("delete", "deployment", "bench", "--wait=true")
    wait_for(lambda: not pods(cluster, "bench"), "the pods to go", timeout=240, interval=1)
    return running, (after[0] - before[0]) / count, (after[1] - before[1]) / count


def measure(kube: Installed, count: int, say: startup.Say) -> K8sRow:
    say(f"{kube.id}: scaling to {count} pods with the agent")
    agent, per_pod, calico_per_pod = _scale_up(kube, count, say)
    for node in kube.cluster.nodes.values():
        node.restart_containerd({"CALICO_PY_AGENT_SOCKET": "off"})
    say(f"{kube.id}: scaling to {count} pods cold (no agent)")
    cold, _, _ = _scale_up(kube, count, say)
    say(f"{kube.id}: {LATE_NODE} joins")
    started = time.monotonic()
    late = kube.cluster.add_node(LATE_NODE, kube.images, SANDBOX_IMAGE)
    kube.cluster.wait_nodes_ready([late.name], timeout=180)
    ready = time.monotonic() - started
    wait_for(lambda: routed_everywhere(kube, late), f"{late.name} routed everywhere", timeout=180,
             interval=0.1)
    routed = time.monotonic() - started
    say(f"{kube.id}: {late.name} Ready after {ready:.1f} s, routed everywhere after {routed:.1f} s")

    def pct(values: list[float], q: float) -> float:
        return round(percentile(values, q) or 0.0, 2)

    return K8sRow(kube.datastore, kube.mode, count, pct(agent, 50), pct(agent, 95), pct(cold, 50),
                  pct(cold, 95), round(per_pod, 1), round(calico_per_pod, 2), round(ready, 1),
                  round(routed, 1))


def render(rows: list[dict[str, object]], command: str) -> str:
    lines = [
        f"`{command}`", "",
        "| datastore | mode | pods | create to Running p50 / p95, agent (s) | cold (s) | "
        "API requests per pod (all / Calico's) | node join: Ready / routed everywhere (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['datastore']} | {r['mode']} | {r['pods']} | {r['agent_p50']} / {r['agent_p95']} | "
            f"{r['cold_p50']} / {r['cold_p95']} | {r['requests_per_pod']} / "
            f"{r['calico_requests_per_pod']} | {r['join_ready']} / {r['join_routed']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench k8s", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bin_dir", type=Path, help="a CNI bin dir holding calico-py.d")
    p.add_argument("--pods", type=int, default=60, help="the Deployment's size")
    p.add_argument("--only", default="", help="datastore-mode pairs (kubernetes-bgp,etcd-vxlan,...)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    p.add_argument("--name", default="k8s", help="file name (without suffix) of the outputs")
    args = p.parse_args(argv)
    say = startup.begin()
    wanted = [c for c in COMBINATIONS if not args.only or "-".join(c) in args.only.split(",")]
    results = args.out / f"{args.name}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="calico-py-bench-k8s.") as scratch:
            work = Path(scratch)
            images = build_images(args.bin_dir, work / "images")
            for datastore, mode in wanted:
                say(f"{datastore}-{mode}: bringing the cluster up")
                workdir = work / f"{datastore}-{mode}"
                workdir.mkdir()
                with installed_cluster(workdir, images, datastore, mode) as kube:
                    row = measure(kube, args.pods, say)
                rows = json.loads(results.read_text()) if results.exists() else []
                rows = [r for r in rows if (r["datastore"], r["mode"]) != (datastore, mode)]
                results.write_text(json.dumps([*rows, asdict(row)], indent=1) + "\n")
    except KeyboardInterrupt:
        print("interrupted: the cluster and temporary files are removed", file=sys.stderr)
        return 130
    text = render(json.loads(results.read_text()), f"python -m bench k8s {' '.join(argv)}")
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0
