"""What several verbs need: the host veth name, the MTU, the pod's netns."""

from __future__ import annotations

from ..config import NetConf
from ..core.constants import DEFAULT_MTU
from ..core.errors import CNIError, Code
from ..core.logs import log
from ..core.request import Request
from ..dataplane.naming import host_veth_name


def host_veth_for(request: Request, netconf: NetConf) -> str:
    return host_veth_name(
        netconf.veth_prefix, request.pod_namespace, request.pod_name, request.container_id
    )


def resolve_mtu(netconf: NetConf) -> int:
    """Config `mtu`, else the number the node keeps in its MTU file, else 1500."""
    if netconf.mtu is not None:
        return netconf.mtu
    try:
        with open(netconf.mtu_file_path, encoding="ascii") as src:
            text = src.read().strip()
    except FileNotFoundError:
        return DEFAULT_MTU
    except OSError as err:
        log.warning("cannot read MTU file %s (%s); using %d", netconf.mtu_file_path, err, DEFAULT_MTU)
        return DEFAULT_MTU
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 68 <= value <= 65535:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"MTU file {netconf.mtu_file_path} holds {text!r}, expected a number from 68 to 65535",
            "mtu_file_path",
        )
    return value


def netns_missing(request: Request) -> CNIError:
    return CNIError(
        Code.INVALID_ENVIRONMENT,
        f"CNI_NETNS {request.netns!r} does not exist",
        "environment variable CNI_NETNS: the pod's network namespace must exist for "
        f"{request.command}",
    )
