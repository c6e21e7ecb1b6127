"""What a cluster's administrator does before the node daemons start, for the tests:
Calico's CRDs, and the daemons' namespace, ServiceAccount and least-privilege roles,
taken by kind from conf/kubernetes/calico-py.yaml (the tests run daemons of their own,
not its DaemonSet)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from cni_calico_py.datastore.kubernetes_objects import NAMESPACE
from tests.controlplane import ControlPlane

CONF = Path(__file__).resolve().parent.parent / "conf" / "kubernetes"
MANIFEST = CONF / "calico-py.yaml"
CRD_KINDS = frozenset({"CustomResourceDefinition"})
RBAC_KINDS = frozenset({"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                        "Role", "RoleBinding"})
# The node daemon's identity: the ServiceAccount the manifest binds its roles to.
NODE_USER = ("system:serviceaccount:calico-py-system:calico-py-node", "system:serviceaccounts")


def kubectl(cp: ControlPlane, *args: str) -> str:
    """kubectl as the admin, in the control plane's namespace."""
    import shutil

    if shutil.which("kubectl") is None:
        raise RuntimeError("kubectl is not installed: apt-get install kubernetes-client")
    proc = subprocess.run([*(["ip", "netns", "exec", cp.netns] if cp.netns else []), "kubectl",
                           "--kubeconfig", str(cp.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def manifest_documents(kinds: frozenset[str]) -> list[dict[str, Any]]:
    """The manifest's documents of these kinds, in its order."""
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text())
            if doc and doc.get("kind") in kinds]


def install_rbac(cp: ControlPlane) -> None:
    with tempfile.NamedTemporaryFile("w", prefix="calico-py-rbac-", suffix=".yaml") as file:
        yaml.safe_dump_all(manifest_documents(RBAC_KINDS), file)
        file.flush()
        kubectl(cp, "apply", "-f", file.name)


def add_node(cp: ControlPlane, name: str) -> None:
    """The Node object a kubelet registers, which the daemon then annotates."""
    status, answer = cp.request("POST", "/api/v1/nodes",
                                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    if status not in (201, 409):
        raise RuntimeError(f"creating Node {name}: {status} {answer}")


def install_crds(cp: ControlPlane, timeout: float = 30.0) -> None:
    """Create every CRD of the manifest and wait until the API serves each of them."""
    docs = manifest_documents(CRD_KINDS)
    for doc in docs:
        status, answer = cp.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        if status not in (201, 409):
            raise RuntimeError(f"creating CRD {doc['metadata']['name']}: {status} {answer}")
    deadline = time.monotonic() + timeout
    for doc in docs:
        plural, group = doc["spec"]["names"]["plural"], doc["spec"]["group"]
        while cp.request("GET", f"/apis/{group}/v1/{plural}")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API does not serve {plural}.{group} after {timeout} s")
            time.sleep(0.1)
    status, answer = cp.request("POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    if status not in (201, 409):
        raise RuntimeError(f"creating namespace {NAMESPACE}: {status} {answer}")
