"""Which datastore a node uses and how to reach it, as the node state carries it to ADDs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backend import Backend

ETCD = "etcdv3"
KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class DatastoreSettings:
    type: str = ETCD
    etcd_endpoints: tuple[str, ...] = ()
    etcd_prefix: str = "/calico-py/v1"
    timeout_seconds: float = 3.0
    # Kubernetes: a kubeconfig file; None: the in-cluster service account.
    kubeconfig: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "etcd_endpoints": list(self.etcd_endpoints),
                "etcd_prefix": self.etcd_prefix, "timeout_seconds": self.timeout_seconds,
                "kubeconfig": self.kubeconfig}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatastoreSettings:
        return cls(str(data.get("type", ETCD)), tuple(str(e) for e in data.get("etcd_endpoints", ())),
                   str(data.get("etcd_prefix", "/calico-py/v1")),
                   float(data.get("timeout_seconds", 3.0)),
                   str(data["kubeconfig"]) if data.get("kubeconfig") else None)

    def describe(self) -> str:
        if self.type == KUBERNETES:
            return f"the Kubernetes API ({self.kubeconfig or 'in-cluster service account'})"
        return f"etcd at {', '.join(self.etcd_endpoints)}"


def open_backend(settings: DatastoreSettings) -> Backend:
    """The backend the settings name; its client library is imported only now."""
    if settings.type == KUBERNETES:
        from .kubernetes import KubernetesBackend

        return KubernetesBackend(settings.kubeconfig, settings.timeout_seconds)
    from .etcd import EtcdBackend

    return EtcdBackend(settings.etcd_endpoints, settings.etcd_prefix, settings.timeout_seconds)
