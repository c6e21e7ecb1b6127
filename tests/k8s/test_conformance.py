"""Kubernetes' own conformance specs for networking pass on a cluster this plugin networks,
installed by its manifest: every SIG Network [Conformance] spec of the release (the
granular pod-to-pod and node-to-pod checks, the Services specs kube-proxy in iptables
mode serves, hostPort, DNS, the API server's proxy, Endpoints and EndpointSlices). Both
datastores in VXLAN mode run all of them; BGP runs the granular checks. Every spec is
named with its result and time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conformance import GRANULAR, SpecResult, chosen_specs, e2e_test, log_tail, run_specs, spec_names
from .install import Installed

# Parallel Ginkgo processes: the specs mostly wait on pods and retries, not on the CPU.
PROCS = 4
TIMEOUT_SECONDS = 1200


@pytest.mark.parametrize(
    "e2e_kube", [("kubernetes", "vxlan"), ("etcd", "vxlan"), ("kubernetes", "bgp")], indirect=True,
    ids=["kubernetes-vxlan", "etcd-vxlan", "kubernetes-bgp"])
def test_upstream_networking_specs_pass(e2e_kube: Installed, tmp_path: Path) -> None:
    everything = chosen_specs(spec_names(e2e_test(), tmp_path))
    wanted = everything if e2e_kube.mode == "vxlan" else list(GRANULAR)
    started = time.monotonic()
    results = run_specs(e2e_kube.cluster, wanted, tmp_path / "report", PROCS, TIMEOUT_SECONDS)
    print(f"\n{e2e_kube.id}: {len(results)} specs in {time.monotonic() - started:.0f} s")
    for result in sorted(results, key=lambda r: r.name):
        print(f"  {result.state:8} {result.seconds:6.1f} s  {result.name}")
    not_passed = [r for r in results if not r.passed]
    assert not not_passed, _explain(not_passed, tmp_path / "report")
    assert sorted(r.name for r in results) == sorted(wanted), "specs that did not run: " + ", ".join(
        sorted(set(wanted) - {r.name for r in results}))


def _explain(results: list[SpecResult], report_dir: Path) -> str:
    lines = [f"{r.state}: {r.name}\n    {r.failure.strip()[:1500]}" for r in results]
    return "\n".join(lines) + f"\n--- e2e log\n{log_tail(report_dir)}"
