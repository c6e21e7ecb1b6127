"""Calico's environment variables as overrides of the node config, so calico.yaml habits carry over.

Each variable is checked here, before anything else happens, and a bad one
is refused naming the variable. A variable wins over the same setting in the
config file; `calico-py node config` shows which one each value came from.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CNIError, Code
from .naming import NODENAME

ENCAPSULATION_VARIABLES = ("CALICO_IPV4POOL_IPIP", "CALICO_IPV4POOL_VXLAN")
# Calico's pool encapsulation modes, as the variables spell them (any case).
POOL_MODES = {"always": "Always", "crosssubnet": "CrossSubnet", "never": "Never"}
BACKENDS = ("bird", "vxlan", "none")
AUTODETECTION = re.compile(r"^(first-found|(can-reach|interface|skip-interface|cidr)=.+)$")


class CalicoEnvError(CNIError):
    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(Code.INVALID_NETWORK_CONFIG,
                         f"environment variable {variable}={value!r}: {reason}", variable)
        self.variable = variable


@dataclass
class Overrides:
    """Config keys and values taken from the environment, and the variable behind each key."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: Any, variable: str) -> None:
        self.values[key] = value
        self.sources[key] = variable


def _cidr(variable: str, value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as err:
        raise CalicoEnvError(variable, value, f"not an IPv4 CIDR like 192.168.0.0/16 ({err})") from None
    return str(network)


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def parse(variable: str, value: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            raise CalicoEnvError(variable, value, f"not a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise CalicoEnvError(variable, value, f"must be from {low} to {high}")
        return number
    return parse


def _node_ip(variable: str, value: str) -> str | None:
    if value.lower() == "autodetect":
        return None
    try:
        interface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise CalicoEnvError(variable, value, "not 'autodetect' or an IPv4 address "
                             "(optionally with its prefix length, as 10.0.0.5/24)") from None
    return str(interface) if "/" in value else str(interface.ip)


def _autodetection(variable: str, value: str) -> str:
    if not AUTODETECTION.match(value):
        raise CalicoEnvError(variable, value, "use first-found, can-reach=<ip>, interface=<regex>, "
                             "skip-interface=<regex> or cidr=<cidr>[,<cidr>...]")
    return value


def _nodename(variable: str, value: str) -> str:
    if not NODENAME.match(value):
        raise CalicoEnvError(variable, value,
                             "not a node name: lower-case letters, digits, '-' and '.'")
    return value


def _endpoints(variable: str, value: str) -> list[str]:
    endpoints = [e.strip() for e in value.split(",") if e.strip()]
    bad = [e for e in endpoints if not re.match(r"^https?://[^/\s]+:\d+/?$", e)]
    if not endpoints or bad:
        raise CalicoEnvError(variable, value, "a comma-separated list of endpoints like "
                             "http://10.99.0.1:2379")
    return endpoints


# Variable -> (config key, parser).
SIMPLE: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "CALICO_IPV4POOL_CIDR": ("pool", _cidr),
    "CALICO_IPV4POOL_BLOCK_SIZE": ("block_size", _integer(20, 31)),
    "IP": ("node_ip", _node_ip),
    "IP_AUTODETECTION_METHOD": ("ip_autodetection", _autodetection),
    "AS": ("as_number", _integer(1, 4294967295)),
    "NODENAME": ("nodename", _nodename),
    "ETCD_ENDPOINTS": ("etcd_endpoints", _endpoints),
    "KUBECONFIG": ("kubeconfig", lambda _variable, value: value),
    # calico-py's own: how soon a node that stopped renewing is shown down, and
    # then removed with its blocks given back (a DaemonSet's settings ConfigMap).
    "CALICO_PY_NODE_LEASE_SECONDS": ("node_lease_seconds", _integer(2, 3600)),
    "CALICO_PY_DEAD_NODE_RELEASE_SECONDS": ("dead_node_release_seconds", _integer(0, 31536000)),
}
VARIABLES = (*SIMPLE, *ENCAPSULATION_VARIABLES, "CALICO_NETWORKING_BACKEND", "DATASTORE_TYPE")


def read(environ: Mapping[str, str], file_settings: Mapping[str, Any]) -> Overrides:
    """The overrides the environment gives, checked against each other and the file's settings."""
    found = Overrides()
    for variable, (key, parse) in SIMPLE.items():
        if variable in environ:
            found.set(key, parse(variable, environ[variable]), variable)
    _datastore(environ, found)
    _encapsulation(environ, file_settings, found)
    _backend(environ, file_settings, found)
    felix = sorted(v for v in environ if v.startswith("FELIX_"))
    if felix:
        logging.getLogger("calico-py").warning(
            "ignored (calico-py has no Felix; its node daemon does the routing): %s", ", ".join(felix))
    return found


def _datastore(environ: Mapping[str, str], found: Overrides) -> None:
    value = environ.get("DATASTORE_TYPE")
    if value is None:
        return
    if value not in ("etcdv3", "kubernetes"):
        raise CalicoEnvError("DATASTORE_TYPE", value, "it is etcdv3 or kubernetes")
    found.set("datastore", value, "DATASTORE_TYPE")


def _pool_mode(variable: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(variable)
    if value is None:
        return None
    mode = POOL_MODES.get(value.lower())
    if mode is None:
        raise CalicoEnvError(variable, value, "use Always, CrossSubnet or Never")
    return mode


def _encapsulation(environ: Mapping[str, str], file_settings: Mapping[str, Any],
                   found: Overrides) -> None:
    ipip = _pool_mode("CALICO_IPV4POOL_IPIP", environ)
    vxlan = _pool_mode("CALICO_IPV4POOL_VXLAN", environ)
    if ipip is None and vxlan is None:
        return
    if ipip not in (None, "Never") and vxlan not in (None, "Never"):
        raise CalicoEnvError("CALICO_IPV4POOL_VXLAN", environ["CALICO_IPV4POOL_VXLAN"],
                             f"a pool is encapsulated one way: CALICO_IPV4POOL_IPIP is {ipip} too")
    suffix = {"Always": "", "CrossSubnet": "CrossSubnet"}
    if ipip in suffix:
        found.set("encapsulation", f"IPIP{suffix[ipip]}", "CALICO_IPV4POOL_IPIP")
        return
    if vxlan in suffix:
        found.set("encapsulation", f"VXLAN{suffix[vxlan]}", "CALICO_IPV4POOL_VXLAN")
        return
    # Never (and the other variable unset or Never): no encapsulation of that kind.
    # A file that encapsulates the other way keeps its mode.
    current = file_settings.get("encapsulation")
    for variable, family in (("CALICO_IPV4POOL_IPIP", "IPIP"), ("CALICO_IPV4POOL_VXLAN", "VXLAN")):
        if variable in environ and (current is None or str(current).startswith(family)
                                    or all(v in environ for v in ENCAPSULATION_VARIABLES)):
            found.set("encapsulation", "Off", variable)
            return


def _backend(environ: Mapping[str, str], file_settings: Mapping[str, Any],
             found: Overrides) -> None:
    value = environ.get("CALICO_NETWORKING_BACKEND")
    if value is None:
        return
    backend = value.lower()
    if backend not in BACKENDS:
        raise CalicoEnvError("CALICO_NETWORKING_BACKEND", value, "use bird, vxlan or none")
    encapsulation = str(found.values.get("encapsulation", file_settings.get("encapsulation", "Off")))
    given = "encapsulation" in found.values or "encapsulation" in file_settings
    if backend == "vxlan" and not encapsulation.startswith("VXLAN"):
        if given:
            raise CalicoEnvError("CALICO_NETWORKING_BACKEND", value,
                                 f"the vxlan backend needs a VXLAN pool, but encapsulation is "
                                 f"{encapsulation}")
        found.set("encapsulation", "VXLAN", "CALICO_NETWORKING_BACKEND")
    if backend == "bird" and encapsulation.startswith("VXLAN"):
        raise CalicoEnvError("CALICO_NETWORKING_BACKEND", value,
                             f"BIRD does not route a VXLAN pool (encapsulation {encapsulation}); "
                             "use the vxlan backend")
    found.set("networking_backend", backend, "CALICO_NETWORKING_BACKEND")
