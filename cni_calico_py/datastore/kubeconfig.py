"""Where the Kubernetes API is and how to authenticate: a kubeconfig file, or the pod's
service account (in a DaemonSet pod), as client-go finds them."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from .errors import DatastoreUnavailable

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class Connection:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None
    # The pod's namespace in the cluster, or the kubeconfig context's.
    namespace: str | None = None


def load(path: str | None) -> Connection:
    """The kubeconfig at `path`; None: $KUBECONFIG, else the in-cluster service account."""
    path = path or os.environ.get("KUBECONFIG")
    if path:
        return _from_file(path)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(f"{SERVICE_ACCOUNT}/token"):
        return _in_cluster()
    raise DatastoreUnavailable("no kubeconfig given (kubeconfig in node.yaml, or KUBECONFIG) and "
                               "not running in a pod with a service account")


def _in_cluster() -> Connection:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=f"{SERVICE_ACCOUNT}/ca.crt")
    with open(f"{SERVICE_ACCOUNT}/token", encoding="utf-8") as file:
        token = file.read().strip()
    namespace = None
    if os.path.exists(f"{SERVICE_ACCOUNT}/namespace"):
        with open(f"{SERVICE_ACCOUNT}/namespace", encoding="utf-8") as file:
            namespace = file.read().strip()
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Connection(server, context, token, namespace)


def _from_file(path: str) -> Connection:
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            config: dict[str, Any] = yaml.safe_load(file) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DatastoreUnavailable(f"cannot read the kubeconfig {path}: {err}") from None
    try:
        current = config.get("current-context") or config["contexts"][0]["name"]
        context = _named(config, "contexts", current)["context"]
        cluster = _named(config, "clusters", context["cluster"])["cluster"]
        user = _named(config, "users", context["user"])["user"] if context.get("user") else {}
    except (KeyError, IndexError, TypeError) as err:
        raise DatastoreUnavailable(f"the kubeconfig {path} names no usable context ({err})") from None
    base = os.path.dirname(os.path.abspath(path))
    tls = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        tls.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        tls.load_verify_locations(cafile=os.path.join(base, cluster["certificate-authority"]))
    _client_certificate(tls, user, base)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(os.path.join(base, user["tokenFile"]), encoding="utf-8") as file:
            token = file.read().strip()
    return Connection(str(cluster["server"]).rstrip("/"), tls, token, context.get("namespace"))


def _named(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    return next(entry for entry in config[section] if entry["name"] == name)


def _client_certificate(tls: ssl.SSLContext, user: dict[str, Any], base: str) -> None:
    if user.get("client-certificate") and user.get("client-key"):
        tls.load_cert_chain(os.path.join(base, user["client-certificate"]),
                            os.path.join(base, user["client-key"]))
    elif user.get("client-certificate-data") and user.get("client-key-data"):
        # ssl loads a certificate only from a file: a private one, removed at once.
        with tempfile.TemporaryDirectory() as scratch:
            cert, key = os.path.join(scratch, "cert"), os.path.join(scratch, "key")
            for where, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
                with open(os.open(where, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                    file.write(base64.b64decode(data))
            tls.load_cert_chain(cert, key)
