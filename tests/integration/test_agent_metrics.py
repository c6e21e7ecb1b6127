"""The agent's Prometheus metrics: off by default, on 127.0.0.1 when asked, and true to what it served."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cni_calls import Pod, netconf
from tests.netns import Node, inside, make_node, running_agent

pytestmark = pytest.mark.netns

PORT = 9465


@pytest.fixture
def bare_node(root: None) -> Iterator[Node]:
    with make_node() as made:
        yield made


def scrape(node: Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the agent serves, by (name, sorted labels)."""
    with inside(node.path), urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics",
                                                   timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def python_entry_point(tmp_path: Path) -> str:
    """The package's own entry point (what the frozen program runs), as an executable."""
    script = tmp_path / "calico-py"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m cni_calico_py \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def listening(node: Node) -> list[str]:
    """The node's listening TCP sockets, as address:port."""
    out = node.exec("ss", "-Htln").stdout.split("\n")
    return [line.split()[3] for line in out if line.strip()]


def test_metrics_match_the_requests_served(bare_node: Node, plugin_exe: str, cni_path: str,
                                           tmp_path: Path) -> None:
    sock = str(tmp_path / "agent.sock")
    command = [plugin_exe, "agent", "--socket", sock, "--metrics-port", str(PORT)]
    with running_agent(bare_node, plugin_exe, sock, command=command):
        assert listening(bare_node) == [f"127.0.0.1:{PORT}"]
        pods = [Pod(node=bare_node, exe=plugin_exe, cni_path=cni_path, conf=netconf(tmp_path),
                    netns=bare_node.add_pod(), container_id=f"metrics{i}") for i in range(3)]
        for pod in pods:
            pod.add()
        bad = Pod(node=bare_node, exe=plugin_exe, cni_path=cni_path,
                  conf=netconf(tmp_path, mtu=1), netns=bare_node.add_pod(), container_id="bad")
        assert bad.call("ADD")[1]["code"] == 7
        for pod in pods[:2]:
            assert pod.delete()[0] == 0
        # Served by its caller while the agent's socket is there: a fallback. The
        # Python entry point is told, as the launcher tells it, that the agent was tried.
        pods[2].exe = python_entry_point(tmp_path)
        assert pods[2].delete(CALICO_PY_AGENT_TRIED="1")[0] == 0
        samples = scrape(bare_node)
    assert samples[("calico_py_agent_requests_total", (("code", "0"), ("verb", "ADD")))] == 3
    assert samples[("calico_py_agent_requests_total", (("code", "7"), ("verb", "ADD")))] == 1
    assert samples[("calico_py_agent_requests_total", (("code", "0"), ("verb", "DEL")))] == 2
    assert samples[("calico_py_agent_request_duration_seconds_count", (("verb", "ADD"),))] == 4
    assert samples[("calico_py_agent_request_duration_seconds_count", (("verb", "DEL"),))] == 2
    assert samples[("calico_py_agent_request_duration_seconds_sum", (("verb", "ADD"),))] > 0
    # Each ADD waited (briefly) for its attachment's and the store's locks.
    assert samples[("calico_py_agent_lock_wait_seconds_count", (("verb", "ADD"),))] == 4
    assert samples[("calico_py_agent_cold_fallbacks_total", (("verb", "DEL"),))] == 1
    assert samples[("calico_py_agent_workers", ())] >= 4
    assert not Path(sock + ".fallbacks").exists(), "the agent removes its fallback file as it stops"


def test_metrics_are_off_by_default(bare_node: Node, plugin_exe: str, tmp_path: Path) -> None:
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock):
        assert listening(bare_node) == []
        assert not Path(sock + ".fallbacks").exists()


@pytest.mark.parametrize("port", ["0", "70000", "x"])
def test_a_bad_metrics_port_is_refused(plugin_exe: str, tmp_path: Path, port: str) -> None:
    proc = subprocess.run([plugin_exe, "agent", "--socket", str(tmp_path / "a.sock"),
                           "--metrics-port", port], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--metrics-port" in proc.stderr, proc.stderr
    assert not (tmp_path / "a.sock").exists()
