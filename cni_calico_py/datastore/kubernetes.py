"""The Kubernetes backend: Calico's own resources in the Kubernetes API, over httpx.

- a block is an `IPAMBlock` named from its CIDR (`10-88-0-0-26`);
- an affinity is a `BlockAffinity` named `<node>-<cidr name>`, labelled with a
  hash of its node's name, so a node lists its own with a label selector and
  never the whole cluster's;
- a node's record is annotations of its Kubernetes `Node`
  (`projectcalico.org/IPv4Address`, `ASNumber`, `IPv4VXLANTunnelAddr`,
  `VXLANTunnelMACAddr`); the Node itself belongs to the kubelet and is never
  deleted here;
- liveness is a `coordination.k8s.io` Lease per node in the daemon's
  namespace (`calico-py-system` by default);
- the pool is an `IPPool`, an attachment's addresses an `IPAMHandle`
  (labelled as affinities are).

Every update carries the resourceVersion it read (409: Conflict); a delete
carries it as a precondition. A watch starts after a list's resourceVersion,
asks for bookmarks to stay current, resumes from the last version it saw when
the server ends the request, and asks for a list again (ResyncNeeded) when
that version is gone (410).
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import httpx

from . import kubeconfig
from .errors import AlreadyExists, Conflict, DatastoreUnavailable, NotFound
from .kubernetes_objects import (
    BY_NODE,
    CUSTOM,
    GROUP,
    HOSTNAME_HASH,
    NAMESPACE,
    decode,
    hostname_hash,
    node_annotations,
    node_record,
    now,
)
from .kubernetes_watch import WATCH_SECONDS, KubernetesWatch, error_message, error_reason
from .model import (
    LIVENESS,
    NODE,
    Affinity,
    Block,
    Handle,
    Key,
    KVPair,
    Listing,
    Liveness,
    NodeRecord,
    Pool,
    Value,
)


class KubernetesBackend:
    kind = "kubernetes"

    def __init__(self, config_path: str | None, timeout: float, namespace: str | None = None) -> None:
        self.connection = kubeconfig.load(config_path)
        self.namespace = namespace or NAMESPACE
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "calico-py"}
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        self._headers = headers
        self.http = self._client()

    def _client(self, read_timeout: float | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.connection.server, verify=self.connection.ssl_context,
                            headers=self._headers,
                            timeout=httpx.Timeout(self.timeout, read=read_timeout or self.timeout))

    # -- paths
    def collection(self, kind: str) -> str:
        if kind == NODE:
            return "/api/v1/nodes"
        if kind == LIVENESS:
            return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"/apis/{GROUP}/{CUSTOM[kind][0]}"

    def _path(self, key: Key) -> str:
        return f"{self.collection(key.kind)}/{key.name}"

    # -- transport
    def _request(self, what: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise DatastoreUnavailable(f"cannot {what}: the Kubernetes API at "
                                       f"{self.connection.server} did not answer ({err})") from None
        if response.status_code < 300:
            return dict(response.json())
        message = error_message(response)
        if response.status_code == 404:
            raise NotFound(f"{what}: {message}")
        if response.status_code == 409:
            reason = error_reason(response)
            if reason == "AlreadyExists":
                raise AlreadyExists(f"{what}: {message}")
            raise Conflict(f"{what}: {message}")
        if response.status_code in (401, 403):
            raise DatastoreUnavailable(f"cannot {what}: {message} (the node daemon's ClusterRole in "
                                       "conf/kubernetes/calico-py.yaml grants what it needs)")
        raise DatastoreUnavailable(f"cannot {what}: {response.status_code} {message}")

    # -- objects
    def _object(self, key: Key, value: Value, revision: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": key.name}
        if revision is not None:
            metadata["resourceVersion"] = revision
        if isinstance(value, Liveness):
            return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                    "spec": {"holderIdentity": value.node, "leaseDurationSeconds": int(value.ttl),
                             "renewTime": now()}}
        assert isinstance(value, Affinity | Block | Pool | Handle)
        if isinstance(value, Affinity):
            metadata["labels"] = {HOSTNAME_HASH: hostname_hash(value.node),
                                  "projectcalico.org/affinity-type": "host",
                                  "projectcalico.org/ip-version": "4"}
        if isinstance(value, Handle) and value.node:
            metadata["labels"] = {HOSTNAME_HASH: hostname_hash(value.node)}
        return {"apiVersion": GROUP, "kind": CUSTOM[key.kind][1], "metadata": metadata,
                "spec": value.spec()}

    def _pair(self, kind: str, obj: dict[str, Any]) -> KVPair | None:
        value = decode(kind, obj)
        if value is None:
            return None
        return KVPair(Key(kind, obj["metadata"]["name"]), value, str(obj["metadata"]["resourceVersion"]))

    # -- the interface
    def create(self, key: Key, value: Value) -> KVPair:
        if key.kind == NODE:
            return self._register(key, value)
        made = self._request(f"create {key}", "POST", self.collection(key.kind),
                             json=self._object(key, value, None))
        return KVPair(key, value, str(made["metadata"]["resourceVersion"]))

    def _register(self, key: Key, value: Value) -> KVPair:
        """A node's record appears on its Node: created here only where no kubelet made it."""
        assert isinstance(value, NodeRecord)
        try:
            node = self._request(f"read {key}", "GET", self._path(key))
        except NotFound:
            made = self._request(f"create {key}", "POST", self.collection(NODE), json={
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": key.name, "annotations": node_annotations(value)}})
            return KVPair(key, value, str(made["metadata"]["resourceVersion"]))
        if node_record(node) is not None:
            raise AlreadyExists(f"{key} is registered already")
        return self._annotate(key, value, str(node["metadata"]["resourceVersion"]))

    def _annotate(self, key: Key, value: NodeRecord | None, revision: str) -> KVPair:
        patched = self._request(
            f"update {key}", "PATCH", self._path(key),
            headers={"Content-Type": "application/merge-patch+json"},
            content=json.dumps({"metadata": {"resourceVersion": revision,
                                             "annotations": node_annotations(value)}}))
        return KVPair(key, value or NodeRecord(key.name, "", 0, ""),
                      str(patched["metadata"]["resourceVersion"]))

    def update(self, kv: KVPair) -> KVPair:
        if kv.key.kind == NODE:
            assert isinstance(kv.value, NodeRecord)
            current = self.get(kv.key)  # NotFound when it is not registered
            if current.revision != kv.revision:
                raise Conflict(f"{kv.key} changed since revision {kv.revision}")
            return self._annotate(kv.key, kv.value, kv.revision)
        done = self._request(f"update {kv.key}", "PUT", self._path(kv.key),
                             json=self._object(kv.key, kv.value, kv.revision))
        return KVPair(kv.key, kv.value, str(done["metadata"]["resourceVersion"]))

    def delete(self, key: Key, revision: str | None) -> None:
        if key.kind == NODE:
            current = self.get(key)
            if revision is not None and current.revision != revision:
                raise Conflict(f"{key} changed since revision {revision}")
            self._annotate(key, None, current.revision)
            return
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if revision is not None:
            options["preconditions"] = {"resourceVersion": revision}
        self._request(f"delete {key}", "DELETE", self._path(key), json=options)

    def get(self, key: Key) -> KVPair:
        found = self._pair(key.kind, self._request(f"read {key}", "GET", self._path(key)))
        if found is None:
            raise NotFound(f"{key} is not registered")
        return found

    def list(self, kind: str, node: str | None = None) -> Listing:
        params = {}
        if kind in BY_NODE and node is not None:
            params["labelSelector"] = f"{HOSTNAME_HASH}={hostname_hash(node)}"
        answer = self._request(f"list {kind}", "GET", self.collection(kind), params=params)
        items = [pair for obj in answer.get("items") or [] if (pair := self._pair(kind, obj))]
        if kind in BY_NODE and node is not None:
            items = [kv for kv in items
                     if isinstance(kv.value, Affinity | Handle) and kv.value.node == node]
        return Listing(items, str(answer["metadata"]["resourceVersion"]))

    def watch(self, kind: str, revision: str) -> KubernetesWatch:
        return KubernetesWatch(self._client(read_timeout=WATCH_SECONDS + 30), self.collection(kind),
                               kind, revision)

    def liveness(self, node: str, ttl: int) -> KubernetesLiveness:
        return KubernetesLiveness(self, node, ttl)

    def close(self) -> None:
        self.http.close()


class KubernetesLiveness:
    """A Lease per node: renewing it is an update of its renewTime."""

    def __init__(self, backend: KubernetesBackend, node: str, ttl: int) -> None:
        self.backend = backend
        self.node = node
        self.ttl = max(int(ttl), 2)
        # The Lease as last written: a renewal is then one request.
        self._current: KVPair | None = None

    def renew(self) -> None:
        key = Key(LIVENESS, self.node)
        fresh = Liveness(self.node, self.ttl)
        for _ in range(3):
            current = self._current
            if current is None:
                try:
                    current = self.backend.get(key)
                except NotFound:
                    try:
                        self._current = self.backend.create(key, fresh)
                        return
                    except AlreadyExists:
                        continue
            try:
                self._current = self.backend.update(KVPair(key, fresh, current.revision))
                return
            except (Conflict, NotFound):
                self._current = None
        raise DatastoreUnavailable(f"cannot renew the Lease of {self.node}: it kept changing")

    def release(self) -> None:
        self._current = None
        with suppress(NotFound):
            self.backend.delete(Key(LIVENESS, self.node), None)
