"""critest (cri-tools v1.37.0) against containerd whose only network is the installed plugin.

containerd (Debian's 1.6.20) runs in a test node's namespace, its CRI network
the installed plugin chained with portmap (tests/clients/node_runtime.py).
critest runs in the same namespace, so the pod IPs, host ports and host
network it checks are the node's, with its temporary files under the test's
dir and in an IPC namespace of its own (the HostIpc specs' `ipcmk` segments
end with it). It is focused on the specs that drive the network plugin, read
back from Ginkgo's JSON report: every one must have run and passed. Then the
plugin must have released every address, and left no veth and no route in
the block but its blackhole. The run is made once with the node agent
serving the plugin's requests and once cold.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns import Node, agent_status, ip_json, make_node, running_agent

from ..crictl import Crictl
from ..helpers import CNI_RESULT_CACHE, VETH_PREFIX, require, reservations
from ..node_runtime import NodeRuntime, node_containerd
from .conftest import RUNTIME_ID, Machine

# Test-only block and node net: no other test uses 10.253.66.0/26 or 10.250.66.0/24.
BLOCK = "10.253.66.0/26"
NETWORK = "calico-py-critest"
NODE_NET = "10.250.66"

# The specs run, by Ginkgo's full text (container texts and the spec's own, space-joined).
NETWORK_SPECS = (
    "[k8s.io] Networking runtime should support networking "
    "runtime should support DNS config [Conformance]",
    "[k8s.io] Networking runtime should support networking "
    "runtime should support set hostname [Conformance]",
    "[k8s.io] Networking runtime should support networking "
    "runtime should support port mapping with only container port [Conformance]",
    "[k8s.io] Networking runtime should support networking "
    "runtime should support port mapping with host port and container port [Conformance]",
    "[k8s.io] Multiple Containers [Conformance] when running multiple containers in a pod "
    "should support network",
    "[k8s.io] Security Context NamespaceOption runtime should support HostNetwork is false",
    "[k8s.io] Security Context NamespaceOption runtime should support HostNetwork is true",
    "[k8s.io] Streaming runtime should support streaming interfaces "
    "runtime should support portforward in host network",
    "[k8s.io] Streaming runtime should support streaming interfaces "
    "runtime should support portforward [Conformance]",
)
SANDBOX_SPECS = (
    "[k8s.io] PodSandbox runtime should support basic operations on PodSandbox "
    "runtime should support running PodSandbox [Conformance]",
    "[k8s.io] PodSandbox runtime should support basic operations on PodSandbox "
    "runtime should support stopping PodSandbox [Conformance]",
    "[k8s.io] PodSandbox runtime should support basic operations on PodSandbox "
    "runtime should support removing PodSandbox [Conformance]",
    "[k8s.io] PodSandbox runtime should support basic operations on PodSandbox "
    "runtime should support preserving PodSandbox attributes [Conformance]",
    "[k8s.io] Idempotence StopPodSandbox should not return an error if already stopped",
    "[k8s.io] Idempotence RemovePodSandbox should not return an error if not found",
)
SPECS = NETWORK_SPECS + SANDBOX_SPECS
# Not run, and not counted. containerd 1.6.20 answers StopPodSandbox for an
# unknown sandbox with NotFound; containerd made it idempotent later on its
# 1.6 branch. No sandbox exists, so no CNI call is involved.
EXCLUDED = (
    "[k8s.io] Idempotence StopPodSandbox should not return an error if not found",
)
# critest's Ginkgo suite (cmd/critest): Ginkgo's focus and skip see it before a spec's text.
SUITE = "CRI validation"
CRITEST_TIMEOUT = 900
FAILURE_LINES = 6


def _go_regexp_literal(text: str) -> str:
    """`text` as a Go (RE2) regexp matching it literally."""
    return "".join(f"\\{c}" if c in r"\.+*?()|[]{}^$" else c for c in text)


def _any_of(names: tuple[str, ...]) -> str:
    """A Ginkgo focus or skip matching exactly these specs: Ginkgo matches the suite's name too."""
    return f"^{SUITE} (" + "|".join(_go_regexp_literal(n) for n in names) + ")$"


@dataclass
class SpecResult:
    name: str
    state: str
    failure: str
    seconds: float


def _read_report(path: Path) -> tuple[list[SpecResult], list[str]]:
    """The specs of Ginkgo's JSON report, and the suite-level nodes (BeforeSuite...) that failed."""
    suites: list[dict[str, Any]] = json.loads(path.read_text())
    specs: list[SpecResult] = []
    broken: list[str] = []
    for suite in suites:
        for report in suite.get("SpecReports") or []:
            failure = report.get("Failure") or {}
            location = failure.get("Location") or {}
            lines = str(failure.get("Message", "")).splitlines()
            # Gomega follows an error's text with a dump of its Go struct: cut it short.
            text = "\n".join(lines[:FAILURE_LINES] + (["..."] if len(lines) > FAILURE_LINES else []))
            if location.get("FileName"):
                text += f" ({Path(location['FileName']).name}:{location.get('LineNumber')})"
            name = " ".join([*(report.get("ContainerHierarchyTexts") or []),
                             report.get("LeafNodeText", "")]).strip()
            state = report.get("State", "")
            if report.get("LeafNodeType") != "It":
                if state not in ("passed", "skipped"):
                    broken.append(f"{report.get('LeafNodeType')}: {state}: {text}")
                continue
            specs.append(SpecResult(name, state, text, report.get("RunTime", 0) / 1e9))
    return specs, broken


@contextmanager
def _plugin_mode(mode: str, runtime: NodeRuntime, exe: Path, log: Path) -> Iterator[None]:
    """agent: the node agent serves the plugin's requests on the socket containerd's
    environment names; cold: nothing listens there and the plugin runs in-process."""
    if mode == "cold":
        yield
        return
    with running_agent(runtime.node, str(exe), str(runtime.agent_socket), str(log)):
        yield


def _node_leftovers(node: Node, block: str) -> list[str]:
    """cali* veths and routes into the block other than the blackhole, in the node's namespace."""
    net = ipaddress.IPv4Network(block)
    left = [f"veth {link['ifname']}" for link in ip_json(node.name, "link", "show")
            if link.get("ifname", "").startswith(VETH_PREFIX)]
    for route in ip_json(node.name, "-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("type") == "blackhole":
            continue
        try:
            inside = ipaddress.IPv4Network(dst, strict=False).subnet_of(net)
        except ValueError:
            continue
        if inside:
            left.append(f"route {dst} dev {route.get('dev')}")
    return left


@pytest.mark.parametrize("mode", ["agent", "cold"])
def test_critest_network_specs(
    mode: str, critest: Path, crictl_exe: Path, e2e_archives: dict[str, Path], rootfs: Path,
    runtime_bin_dir: Path, installed_bin: Path, tmp_path: Path,
) -> None:
    """Every focused critest spec passes, and the plugin leaves the node as it found it."""
    for program, package in (("nsenter", "util-linux"), ("unshare", "util-linux"),
                             ("ipcs", "util-linux"), ("iptables", "iptables")):
        require(program, package)
    exe = installed_bin / "calico-py"
    machine = Machine.snapshot(tmp_path)
    for cached in CNI_RESULT_CACHE.glob(f"{NETWORK}-*"):
        cached.unlink()
    problems: list[str] = []
    specs: list[SpecResult] = []
    runtime_ids: set[str] = set()
    started = time.monotonic()
    try:
        with make_node(net=NODE_NET) as node, \
                node_containerd(tmp_path / "rt", node, runtime_bin_dir, rootfs, NETWORK,
                                BLOCK) as runtime:
            try:
                for archive in e2e_archives.values():
                    runtime.containerd.import_image(archive)
                with _plugin_mode(mode, runtime, exe, tmp_path / "agent.log"):
                    try:
                        specs, problems = _critest(critest, node, runtime, tmp_path)
                    finally:
                        left = Crictl(crictl_exe, runtime.containerd.socket).remove_all()
                        problems += [f"sandbox {sandbox} left by critest (now removed)"
                                     for sandbox in left]
                    if mode == "agent":
                        problems += _agent_served(exe, runtime)
                held = reservations(runtime.ipam_dir, NETWORK)
                if held:
                    problems.append(f"the IPAM store still holds {held}")
                problems += [f"{left} left in the node" for left in _node_leftovers(node, BLOCK)]
                results = sorted(p.name for p in CNI_RESULT_CACHE.glob(f"{NETWORK}-*"))
                if results:
                    problems.append(f"cached results left in {CNI_RESULT_CACHE}: {results}")
            finally:
                if runtime.containerd.log.exists():
                    runtime_ids = set(RUNTIME_ID.findall(runtime.containerd.log.read_text(
                        errors="replace")))
                if problems or any(s.state not in ("passed", "skipped") for s in specs):
                    _print_logs(runtime, tmp_path)
    finally:
        for cached in CNI_RESULT_CACHE.glob(f"{NETWORK}-*"):
            cached.unlink(missing_ok=True)
        problems += [f"{left} left on the machine (now removed)"
                     for left in machine.clean(runtime_ids)]
    elapsed = time.monotonic() - started
    ran = {s.name: s for s in specs if s.state != "skipped"}
    print(f"critest {mode}: {len(ran)} specs in {elapsed:.0f} s")
    for spec in ran.values():
        print(f"  {spec.state:8} {spec.seconds:5.1f} s  {spec.name}")

    missing = [name for name in SPECS if name not in ran]
    failed = [f"{name}: {spec.state}:\n    " + spec.failure.replace("\n", "\n    ")
              for name, spec in ran.items() if spec.state != "passed"]
    unexpected = sorted(set(ran) - set(SPECS))
    report = []
    if failed:
        report.append("critest specs failed:\n  " + "\n  ".join(failed))
    if missing and specs:
        report.append("focused specs critest did not run (renamed upstream?):\n  "
                      + "\n  ".join(missing))
    if unexpected:
        report.append("specs run though not focused:\n  " + "\n  ".join(unexpected))
    if problems:
        report.append("\n  ".join(["after critest:", *problems]))
    assert not report, "\n".join(report)


def _critest(critest: Path, node: Node, runtime: NodeRuntime,
             tmp_path: Path) -> tuple[list[SpecResult], list[str]]:
    """Run the focused specs in the node's namespace; their results, and what went wrong besides."""
    endpoint = f"unix://{runtime.containerd.socket}"
    temp = tmp_path / "critest-tmp"
    temp.mkdir()
    json_report = tmp_path / "critest.json"
    output = tmp_path / "critest.log"
    env = {**os.environ, "TMPDIR": str(temp), "HOME": str(temp)}
    args = [
        require("nsenter", "util-linux"), f"--net={node.path}",
        require("unshare", "util-linux"), "--ipc",
        str(critest),
        f"--runtime-endpoint={endpoint}", f"--image-endpoint={endpoint}",
        f"--config={tmp_path / 'crictl.yaml'}",
        f"--ginkgo.focus={_any_of(SPECS)}", f"--ginkgo.skip={_any_of(EXCLUDED)}",
        f"--ginkgo.json-report={json_report}", "--ginkgo.no-color", "--ginkgo.v",
        f"--ginkgo.timeout={CRITEST_TIMEOUT - 60}s",
    ]
    with output.open("wb") as out:
        try:
            proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  cwd=tmp_path, timeout=CRITEST_TIMEOUT, check=False)
            outcome = f"critest exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            outcome = f"critest was killed after {CRITEST_TIMEOUT} s"
    if not json_report.exists():
        tail = "\n".join(output.read_text(errors="replace").splitlines()[-40:])
        return [], [f"{outcome} and wrote no JSON report; its output ends:\n{tail}"]
    specs, broken = _read_report(json_report)
    return specs, [f"critest's {b}" for b in broken]


def _agent_served(exe: Path, runtime: NodeRuntime) -> list[str]:
    """The agent must have served the run's ADDs and DELs, and failed none."""
    status = agent_status(str(exe), str(runtime.agent_socket))
    if status is None:
        return ["the node agent did not answer after critest"]
    served = status.get("served", {})
    problems = []
    if not served.get("ADD") or not served.get("DEL"):
        problems.append(f"the node agent served no ADD or no DEL: {served}")
    if status.get("failed"):
        problems.append(f"the node agent failed requests: {status['failed']}")
    return problems


def _print_logs(runtime: NodeRuntime, tmp_path: Path) -> None:
    print(f"containerd log (tail):\n{runtime.containerd.log_tail(60)}")
    if runtime.cni_log.exists():
        print("plugin log (tail):\n" + "\n".join(runtime.cni_log.read_text(
            errors="replace").splitlines()[-60:]))
    print(f"critest output: {tmp_path / 'critest.log'}")
