"""The kubeconfig the node's side of the plugin reaches the Kubernetes API with.

The CNI executable runs on the node, outside any pod, and needs the
datastore when an ADD finds the node's blocks full and claims another. It
cannot read the pod's service account mount, so the account's token and the
cluster's CA are written out whole into one file beside the conflist. The
node daemon uses the same file, so the path its node state records for
ADDs is valid on the node and in the pod alike.

The token is the pod's: it stays valid while the pod lives (with the API
server's default --service-account-extend-token-expiration) and is written
again by each new pod of the DaemonSet.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

import yaml

from .errors import InstallError

FILENAME = "calico-py-kubeconfig"
USER = "calico-py-node"
CLUSTER = "kubernetes"


def server(environ: Mapping[str, str]) -> str:
    """The API server as the pod's environment names it (the kubernetes Service)."""
    host = environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise InstallError("KUBERNETES_SERVICE_HOST is not set, so the API server's address is "
                           "unknown: run in a pod, set KUBERNETES_SERVICE_HOST and "
                           "KUBERNETES_SERVICE_PORT, or DATASTORE_TYPE=etcdv3 for no kubeconfig")
    port = environ.get("KUBERNETES_SERVICE_PORT") or "443"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def render(service_account: str, environ: Mapping[str, str]) -> str:
    """A kubeconfig holding the service account's token and CA, for the API server."""
    address = server(environ)
    try:
        with open(os.path.join(service_account, "token"), encoding="utf-8") as file:
            token = file.read().strip()
        with open(os.path.join(service_account, "ca.crt"), "rb") as file:
            authority = file.read()
    except OSError as err:
        raise InstallError(f"cannot read the pod's service account in {service_account}: "
                           f"{err.strerror} ({err.filename}); the DaemonSet's pod needs "
                           "automountServiceAccountToken, or set DATASTORE_TYPE=etcdv3") from None
    if not token:
        raise InstallError(f"the service account token {service_account}/token is empty")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {
            "server": address,
            "certificate-authority-data": base64.b64encode(authority).decode("ascii")}}],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [{"name": USER, "context": {"cluster": CLUSTER, "user": USER}}],
        "current-context": USER,
    }
    return str(yaml.safe_dump(config, sort_keys=False))

