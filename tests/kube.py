"""What a cluster's administrator does before the node daemons start, for the tests:
Calico's CRDs from conf/kubernetes/crds.yaml and the daemons' namespace."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from cni_calico_py.datastore.kubernetes import NAMESPACE
from tests.controlplane import ControlPlane

CRDS = Path(__file__).resolve().parent.parent / "conf" / "kubernetes" / "crds.yaml"


def install_crds(cp: ControlPlane, timeout: float = 30.0) -> None:
    """Create every CRD of crds.yaml and wait until the API serves each of them."""
    docs = [d for d in yaml.safe_load_all(CRDS.read_text()) if d]
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
