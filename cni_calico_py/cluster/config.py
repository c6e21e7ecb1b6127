"""The node daemon's cluster config: `/etc/calico-py/node.yaml`, checked by pydantic.

Keys are snake_case, as operators write Calico's node settings. A missing
file is not an error for the CNI plugin: without it a node runs alone on the
block in its conflist.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ipam.node_state import DEFAULT_STATE_FILE

from ..core.decoding import config_error
from ..core.errors import CNIError, Code
from ..datastore.model import Pool
from ..datastore.settings import DatastoreSettings
from .naming import NODENAME

DEFAULT_PATH = "/etc/calico-py/node.yaml"
DEFAULT_CONFLIST = "/etc/cni/net.d/10-calico-py.conflist"
Encapsulation = Literal["Off", "VXLAN", "VXLANCrossSubnet", "IPIP", "IPIPCrossSubnet"]
# Calico's CALICO_NETWORKING_BACKEND: who routes between nodes (none: nobody, the
# underlay already routes the pool); unset, the encapsulation decides.
Backend = Literal["bird", "vxlan", "none"]


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Where the cluster's state lives: etcd, or the Kubernetes API as Calico's resources.
    datastore: Literal["etcdv3", "kubernetes"] = "etcdv3"
    etcd_endpoints: list[str] = Field(default_factory=list)
    etcd_prefix: str = "/calico-py/v1"
    etcd_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    # Kubernetes: the kubeconfig to use; unset, the in-cluster service account.
    kubeconfig: str | None = None
    pool: ipaddress.IPv4Network
    block_size: int = Field(default=26, ge=20, le=31)
    encapsulation: Encapsulation = "Off"
    networking_backend: Backend | None = None
    as_number: int = Field(default=64512, ge=1, le=4294967295)
    nodename: str = Field(default_factory=socket.gethostname)
    node_ip: str | None = None
    ip_autodetection: str = "first-found"
    state_file: str = DEFAULT_STATE_FILE
    cni_conflist: str = DEFAULT_CONFLIST
    block_release_after_seconds: float = Field(default=600.0, gt=0)
    # Changes arrive through watches; the resync re-reads everything (the safety net).
    resync_seconds: float = Field(default=90.0, gt=0)
    # The node's lease (etcd, or a Kubernetes Lease): a node that stops renewing it is seen
    # as down after this long.
    node_lease_seconds: int = Field(default=60, ge=2, le=3600)
    # A node down this long is taken out of the registry and its blocks freed; 0: never.
    dead_node_release_seconds: float = Field(default=0.0, ge=0)
    # Set on the nodes that are BGP route reflectors (e.g. 224.0.0.1); the others then
    # peer with the reflectors only. Unset everywhere: a full mesh.
    route_reflector_cluster_id: str | None = None
    bird_dir: str = "/run/calico-py/bird"
    # Prometheus metrics on 127.0.0.1:<port>; unset, none are served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Where the pod MTU for the encapsulation goes; the conflist's mtu_file_path reads it.
    mtu_file: str = "/var/lib/calico/mtu"

    @field_validator("encapsulation", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare Off as false.
        return "Off" if value is False else value

    @field_validator("etcd_endpoints")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/\s]+:\d+/?$", url):
                raise ValueError(f"{url!r} is not an endpoint like http://10.99.0.1:2379")
        return [u.rstrip("/") for u in value]

    @field_validator("nodename")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NODENAME.match(value):
            raise ValueError(f"{value!r} is not a node name: lower-case letters, digits, '-' and '.'")
        return value

    @field_validator("route_reflector_cluster_id")
    @classmethod
    def _cluster_id(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a cluster ID like 224.0.0.1") from None
        return value

    @model_validator(mode="after")
    def _datastore_reachable(self) -> ClusterConfig:
        if self.datastore == "etcdv3" and not self.etcd_endpoints:
            raise ValueError("etcd_endpoints is required with datastore etcdv3 "
                             "(or set datastore: kubernetes)")
        return self

    @property
    def ippool(self) -> Pool:
        """The pool as Calico's IPPool `default-ipv4-ippool`, with its encapsulation."""
        mode = self.encapsulation
        crossing = "CrossSubnet" if mode.endswith("CrossSubnet") else "Always"
        return Pool("default-ipv4-ippool", self.pool, self.block_size,
                    ipip_mode=crossing if mode.startswith("IPIP") else "Never",
                    vxlan_mode=crossing if mode.startswith("VXLAN") else "Never")

    @property
    def datastore_settings(self) -> DatastoreSettings:
        return DatastoreSettings(self.datastore, tuple(self.etcd_endpoints), self.etcd_prefix,
                                 self.etcd_timeout_seconds, self.kubeconfig)

    @model_validator(mode="after")
    def _block_fits_pool(self) -> ClusterConfig:
        if self.block_size < self.pool.prefixlen:
            raise ValueError(f"block_size /{self.block_size} is larger than the pool {self.pool}")
        return self

    @property
    def routing_mode(self) -> str:
        """How this node routes to other nodes' blocks: the encapsulation, or
        peers.NO_ROUTING with the networking backend `none` (the underlay routes the pool)."""
        from .peers import NO_ROUTING

        return NO_ROUTING if self.networking_backend == "none" else self.encapsulation

    @model_validator(mode="after")
    def _backend_fits_encapsulation(self) -> ClusterConfig:
        vxlan = self.encapsulation.startswith("VXLAN")
        if self.networking_backend == "vxlan" and not vxlan:
            raise ValueError(f"networking_backend vxlan needs a VXLAN encapsulation, "
                             f"not {self.encapsulation}")
        if self.networking_backend == "bird" and vxlan:
            raise ValueError(f"networking_backend bird does not route {self.encapsulation}")
        return self


def parse(raw: Any, source: str) -> ClusterConfig:
    if not isinstance(raw, dict):
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"{source}: the cluster config must be a mapping of settings")
    try:
        return ClusterConfig.model_validate(raw)
    except ValidationError as err:
        problem = config_error(err)
        detail = problem.msg.removeprefix("invalid network config: ")
        raise CNIError(problem.code, f"{source}: invalid cluster config: {detail}",
                       problem.details) from None


def load(path: str = DEFAULT_PATH, environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """The config file (YAML, so JSON too) with Calico's environment variables over it,
    or error 7 naming the file, the variable, and each bad key."""
    return load_with_sources(path, environ)[0]


def load_with_sources(path: str = DEFAULT_PATH, environ: Mapping[str, str] | None = None,
                      ) -> tuple[ClusterConfig, dict[str, str]]:
    """The config, and where each of its values came from: the file, a variable, or the default."""
    from . import calico_env

    environ = os.environ if environ is None else environ
    raw = _read_file(path, missing_ok=any(v in environ for v in calico_env.VARIABLES))
    overrides = calico_env.read(environ, raw)
    source = path if not overrides.sources else f"{path} with {', '.join(overrides.sources.values())}"
    try:
        conf = parse({**raw, **overrides.values}, source)
    except CNIError as err:
        named = [f"{variable} sets {key}" for key, variable in overrides.sources.items()
                 if key in err.msg]
        if named:
            err.msg += f" ({'; '.join(named)})"
        raise
    sources = {}
    for key in ClusterConfig.model_fields:
        variable = overrides.sources.get(key)
        if variable is not None:
            sources[key] = f"env {variable}" + (f" (over {path})" if key in raw else "")
        else:
            sources[key] = path if key in raw else "default"
    return conf, sources


def _read_file(path: str, missing_ok: bool) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"cannot read the cluster config {path}: no such file (and no Calico "
                       "environment variables such as ETCD_ENDPOINTS are set)") from None
    except OSError as err:
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"cannot read the cluster config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise CNIError(Code.INVALID_NETWORK_CONFIG, f"{path} is not valid YAML: {err}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"{path}: the cluster config must be a mapping of settings")
    return raw
