"""Kubernetes' own end-to-end specs, run against the test cluster the plugin networks.

`e2e.test` and the `ginkgo` runner are the release's (scripts/go-tools.sh); the
images the specs run are made offline by scripts/build_e2e_images.py under the
names the release gives them, and every node imports them. The cluster's DNS is
CoreDNS (tests/k8s/coredns.yaml), as kubeadm deploys it: the Services specs
reach a service by its name as well as by its address.

The specs run from the underlay, where the API server listens, in parallel
processes; Ginkgo's JSON report is read back and every spec named with its
state, its time and, when it failed, why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.clients.helpers import go_tool

from .checks import block_owners
from .cluster import KubeCluster
from .install import Installed

REPO = Path(__file__).resolve().parents[2]
COREDNS_MANIFEST = Path(__file__).with_name("coredns.yaml")

# The specs, by the exact names the release gives them (`e2e.test --ginkgo.dry-run`).
GRANULAR = (
    "[sig-network] Networking Granular Checks: Pods should function for intra-pod "
    "communication: http [NodeConformance] [Conformance]",
    "[sig-network] Networking Granular Checks: Pods should function for intra-pod "
    "communication: udp [NodeConformance] [Conformance]",
    "[sig-network] Networking Granular Checks: Pods should function for node-pod "
    "communication: http [LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-network] Networking Granular Checks: Pods should function for node-pod "
    "communication: udp [LinuxOnly] [NodeConformance] [Conformance]",
)
# Every [Conformance] spec of SIG Network: the data path (ClusterIP, NodePort, session
# affinity, endpoints following pods, type changes, hostPort, DNS, the API server's proxy
# to pods and services) and the API objects it rests on (Endpoints, EndpointSlices,
# Ingress, ServiceCIDR).
SIG_NETWORK = "[sig-network] "
CONFORMANCE = "[Conformance]"


@dataclass(frozen=True)
class SpecResult:
    name: str
    state: str          # passed, failed, skipped, pending, panicked, interrupted, timedout
    seconds: float
    failure: str

    @property
    def passed(self) -> bool:
        return self.state == "passed"


def e2e_test() -> Path:
    return go_tool("e2e.test")


def spec_names(binary: Path, scratch: Path) -> list[str]:
    """Every spec the release's suite holds, by its full name: a dry run (nothing runs) whose
    JSON report names them as the run's report will."""
    report = scratch / "dry-run.json"
    proc = subprocess.run([str(binary), "--ginkgo.dry-run", f"--ginkgo.json-report={report}"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          cwd=scratch)
    if not report.exists():
        raise AssertionError(f"{binary} --ginkgo.dry-run wrote no report: {proc.stderr[-2000:]}")
    return [result.name for result in read_report(report)]


def chosen_specs(names: list[str]) -> list[str]:
    """The specs this project runs: SIG Network's conformance specs, the granular checks
    among them."""
    chosen = sorted(name for name in names
                    if name.startswith(SIG_NETWORK) and CONFORMANCE in name)
    missing = [name for name in GRANULAR if name not in chosen]
    if missing:
        raise AssertionError(f"the release has no spec named {missing}")
    return chosen


def focus_regex(names: list[str]) -> str:
    # Unanchored: Ginkgo matches a spec's whole text, but not from its first character.
    return "|".join(re.escape(name) for name in names)


def e2e_images(out: Path) -> tuple[list[Path], str]:
    """The e2e images (scripts/build_e2e_images.py) as tars, and CoreDNS's image name."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_e2e_images.py"),
         "--e2e-test", str(e2e_test()), "--agnhost", str(go_tool("agnhost")),
         "--coredns", str(go_tool("coredns")), "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build_e2e_images.py failed:\n{proc.stderr[-3000:]}")
    made = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    coredns = next(tag for tag in made if "/coredns/" in tag)
    return [Path(path) for path in made.values()], coredns


@contextlib.contextmanager
def pods_routed_from_control_plane(kube: Installed, interval: float = 2.0) -> Iterator[None]:
    """The underlay (the control plane's network) routes each block to the node that owns it.

    On a kubeadm cluster the control plane runs on nodes the plugin routes, so the
    API server reaches pods: it proxies to them (`pods/proxy`, which the DNS specs
    read their results through), and pods reach it. Here it runs in the underlay,
    so each block the datastore assigns is routed there to its node, as BGP would
    route it, and kept so while the specs run (a node may claim a new block).
    One route for the whole pool spread over the nodes is not enough: a
    connection would come in through one node and answer through another, and
    kube-proxy's rules drop the first node's half as invalid.
    """
    stop = threading.Event()

    def sync() -> None:
        while True:
            with contextlib.suppress(Exception):
                for block, owner in block_owners(kube).items():
                    node = kube.cluster.nodes.get(owner)
                    if node is not None:
                        subprocess.run(["ip", "-n", kube.cluster.underlay.name, "route", "replace",
                                        block, "via", node.address], capture_output=True)
            if stop.wait(interval):
                return

    sync_thread = threading.Thread(target=sync, name="control-plane-routes", daemon=True)
    sync_thread.start()
    try:
        yield
    finally:
        stop.set()
        sync_thread.join()


def deploy_dns(cluster: KubeCluster, coredns_image: str, timeout: float = 120) -> None:
    """CoreDNS as the cluster's DNS, both replicas ready."""
    manifest = COREDNS_MANIFEST.read_text().replace("COREDNS_IMAGE", coredns_image)
    cluster.kubectl("apply", "-f", "-", input_text=manifest)
    try:
        cluster.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns",
                        f"--timeout={int(timeout)}s", timeout=timeout + 10)
    except AssertionError as error:
        pods = cluster.kubectl("-n", "kube-system", "get", "pods", "-o", "wide", check=False).stdout
        events = cluster.kubectl("-n", "kube-system", "get", "events", check=False).stdout
        logs = cluster.kubectl("-n", "kube-system", "logs", "deployment/coredns", "--tail=30",
                               check=False).stdout
        raise AssertionError(f"{error}\n{pods}\n{events[-3000:]}\n{logs}") from None


def run_specs(cluster: KubeCluster, names: list[str], report_dir: Path, procs: int,
              timeout: float) -> list[SpecResult]:
    """Run `names` with `procs` parallel Ginkgo processes; every spec's result, read back
    from Ginkgo's JSON report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    # Ginkgo writes the report into --output-dir, under this name.
    report = report_dir / "report.json"
    report.unlink(missing_ok=True)
    argv = [
        "ip", "netns", "exec", cluster.underlay.name,
        str(go_tool("ginkgo")), f"--procs={procs}", f"--focus={focus_regex(names)}",
        "--no-color", "--timeout", f"{int(timeout)}s", f"--json-report={report.name}",
        f"--output-dir={report_dir}", "--silence-skips",
        str(e2e_test()), "--",
        f"--kubeconfig={cluster.control_plane.kubeconfig}", "--provider=skeleton",
        f"--report-dir={report_dir}", f"--e2e-output-dir={report_dir}",
        # Namespaces are left for the teardown; the dump would fill the log.
        "--dump-logs-on-failure=false",
    ]
    with (report_dir / "e2e.log").open("wb") as log:
        # Its own process group: ginkgo's e2e.test processes go with it, whatever happens.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=report_dir, start_new_session=True)
        try:
            proc.wait(timeout + 120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if not report.exists():
        raise AssertionError(f"e2e.test wrote no report; its log ends:\n{log_tail(report_dir)}")
    # The report lists every spec of the suite; those outside the focus as skipped.
    wanted = set(names)
    return [result for result in read_report(report)
            if result.name in wanted or result.state not in ("passed", "skipped")]


def read_report(path: Path) -> list[SpecResult]:
    """The specs of a Ginkgo JSON report (the suite's setup nodes left out)."""
    suites: list[dict[str, Any]] = json.loads(path.read_text())
    results = []
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                if spec.get("State") not in ("passed", "skipped"):
                    results.append(_result(spec, spec.get("LeafNodeType", "setup")))
                continue
            results.append(_result(spec, None))
    return results


def _result(spec: dict[str, Any], name: str | None) -> SpecResult:
    if name is None:
        containers = spec.get("ContainerHierarchyTexts") or []
        name = " ".join([*containers, spec.get("LeafNodeText", "")])
    failure = (spec.get("Failure") or {}).get("Message", "")
    return SpecResult(name=name.strip(), state=spec.get("State", "?"),
                      seconds=spec.get("RunTime", 0) / 1e9, failure=failure)


def log_tail(report_dir: Path, lines: int = 60) -> str:
    path = report_dir / "e2e.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
