"""A Kubernetes control plane made offline: etcd 3.6 and kube-apiserver 1.36 from the module proxy.

kubectl is Debian's kubernetes-client (scripts/setup.sh), a client only.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clients.helpers import require
from tests.controlplane import ControlPlane, running_control_plane
from tests.netns import add_netns, del_netns, sh, unique_name

pytestmark = pytest.mark.netns


def kubectl(cp: ControlPlane, *args: str) -> str:
    """kubectl as the admin, in the control plane's namespace."""
    argv = [require("kubectl", "kubernetes-client"), "--kubeconfig", str(cp.kubeconfig), *args]
    if cp.netns:
        argv = ["ip", "netns", "exec", cp.netns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def requests_total(cp: ControlPlane, **labels: str) -> float:
    """The sum of apiserver_request_total over the series that carry `labels`."""
    status, text = cp.request("GET", "/metrics")
    assert status == 200, text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "apiserver_request_total"
               and labels.items() <= sample.labels.items())


def test_kubectl_makes_a_namespace_and_a_configmap(root: None, tmp_path: Path) -> None:
    with running_control_plane(tmp_path) as cp:
        kubectl(cp, "create", "namespace", "demo")
        kubectl(cp, "--namespace", "demo", "create", "configmap", "settings", "--from-literal=mtu=1450")

        assert kubectl(cp, "--namespace", "demo", "get", "configmap", "settings",
                       "-o", "jsonpath={.data.mtu}") == "1450"
        status, answer = cp.request("GET", "/api/v1/namespaces/demo/configmaps/settings")
        assert status == 200 and answer["data"] == {"mtu": "1450"}
        assert requests_total(cp, verb="POST", resource="configmaps", code="201") >= 1
        directory = cp.directory
    assert not directory.exists()


def test_control_plane_in_a_network_namespace_is_reached_only_from_there(
        root: None, tmp_path: Path) -> None:
    netns = unique_name("cp")
    add_netns(netns)
    try:
        with running_control_plane(tmp_path, netns=netns) as cp:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
            assert cp.request("POST", "/api/v1/namespaces", namespace)[0] == 201
            configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "settings", "namespace": "demo"},
                         "data": {"mtu": "1450"}}
            status, answer = cp.request("POST", "/api/v1/namespaces/demo/configmaps", configmap)
            assert status == 201, answer

            assert "settings" in kubectl(cp, "--namespace", "demo", "get", "configmaps")
            assert requests_total(cp, verb="POST", resource="configmaps", code="201") >= 1
            # This namespace's loopback is another one: nothing listens on that port here.
            port = int(cp.url.rsplit(":", 1)[1])
            with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
                pass
            pids = sh("ip", "netns", "pids", netns).stdout.split()
            assert len(pids) == 2, pids  # etcd and kube-apiserver
        assert sh("ip", "netns", "pids", netns).stdout.split() == []
        assert list(tmp_path.iterdir()) == []
    finally:
        del_netns(netns)
