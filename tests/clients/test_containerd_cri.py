"""containerd's CRI plugin, driven the way kubelet drives it, with the installed plugin.

The runtime makes each pod's namespace itself and runs the plugin in the
machine's namespace, so the pods' host veths and routes are the machine's:
`guarded_host` removes anything left, and the test fails if DEL left it.
Traffic stays between the pods and from the machine to its own pods.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import agent_status, running_agent

from .conftest import CRI_BLOCK, CRI_NETWORK
from .containerd import Containerd
from .cri.client import CRIClient, SandboxStatus
from .helpers import guarded_host, ping, reservations

PODS = 3


def test_version(cri: CRIClient) -> None:
    name, version, api = cri.version()
    assert name == "containerd" and version and api == "v1"


@pytest.fixture(params=["cold", "agent"])
def plugin_mode(
    request: pytest.FixtureRequest, containerd: Containerd, installed_bin: Path, tmp_path: Path,
) -> Iterator[Path | None]:
    """cold: the runtime's plugin runs in-process; agent: it hands requests to a node agent.

    The agent runs where a node's agent runs, in the machine's namespace,
    listening on the socket the daemon's environment names.
    """
    if request.param == "cold":
        yield None
        return
    socket = containerd.base / "agent.sock"
    with running_agent(None, str(installed_bin / "calico-py"), str(socket), str(tmp_path / "agent.log")):
        yield socket


def test_three_pods(
    cri: CRIClient, containerd: Containerd, plugin_mode: Path | None, installed_bin: Path,
    tmp_path: Path,
) -> None:
    data_dir = containerd.base / "ipam"
    with guarded_host(CRI_BLOCK, CRI_NETWORK) as host:
        sandboxes: list[str] = []
        try:
            for i in range(PODS):
                name = f"e2e-{i}"
                sandboxes.append(cri.run_pod_sandbox(
                    name, "calico-py-e2e", str(uuid.uuid4()), tmp_path / name))
            statuses = [cri.pod_sandbox_status(s) for s in sandboxes]
            ips = _check_statuses(statuses)
            assert reservations(data_dir, CRI_NETWORK) == sorted(ips, key=ipaddress.ip_address)
            veths = host.new_veths()
            assert len(veths) == PODS, veths
            routes = {r["dst"]: r for r in host.block_routes()}
            for ip in ips:
                assert routes[ip]["dev"] in veths, routes

            for i, status in enumerate(statuses):
                assert status.netns_path
                ping(ips[(i + 1) % PODS], netns=status.netns_path)
            ping(ips[0])  # from the machine to its own pod

            # kubelet's order: stop (DEL with the netns), then remove (DEL without it).
            for sandbox in sandboxes:
                cri.stop_pod_sandbox(sandbox)
            assert reservations(data_dir, CRI_NETWORK) == []
            assert host.leftovers() == []
            for sandbox in list(sandboxes):
                cri.remove_pod_sandbox(sandbox)
                sandboxes.remove(sandbox)
            assert reservations(data_dir, CRI_NETWORK) == []
            assert host.leftovers() == []
            assert all(not Path(s.netns_path or "").exists() for s in statuses)
            if plugin_mode is not None:
                agent = agent_status(str(installed_bin / "calico-py"), str(plugin_mode))
                assert agent is not None
                # One ADD per pod, DEL on stop and again on remove.
                assert agent["served"].get("ADD") == PODS, agent["served"]
                assert agent["served"].get("DEL") == 2 * PODS, agent["served"]
                assert agent["failed"] == {}, agent
        except BaseException:
            print(f"containerd log:\n{containerd.log_tail()}")
            log = containerd.base / "cni.log"
            if log.exists():
                print("plugin log:\n" + "\n".join(log.read_text().splitlines()[-60:]))
            raise
        finally:
            for sandbox in sandboxes:
                for call in (cri.stop_pod_sandbox, cri.remove_pod_sandbox):
                    try:
                        call(sandbox)
                    except Exception as err:  # cleanup: report and go on
                        print(f"cleanup of sandbox {sandbox}: {err}")


def _check_statuses(statuses: list[SandboxStatus]) -> list[str]:
    block = ipaddress.ip_network(CRI_BLOCK)
    ips = []
    for status in statuses:
        assert status.ready, status
        assert ipaddress.ip_address(status.ip) in block, status
        assert status.additional_ips == [], status
        ips.append(status.ip)
    assert len(set(ips)) == PODS, ips
    return ips
