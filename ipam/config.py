"""The IPAM config a request runs with: checked once per distinct section, blocks per request.

validation.py checks a section (pydantic and the address rules); its result
is remembered across processes (cni_calico_py/core/verdicts.py) as plain values,
so most requests never import pydantic. In cluster mode the node's blocks
come from the node state file on every request, since they change while the
config does not.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from cni_calico_py.core import results, verdicts
from cni_calico_py.core.errors import CNIError, Code

from . import node_state
from .ranges import IpamConf, Range, RangeSet


def parse(raw: dict[str, Any]) -> IpamConf:
    """The resolved IPAM config of a network config, or error 7 naming each bad field."""
    subject = {"name": raw.get("name"), "ipam": raw.get("ipam")}

    def validate() -> dict[str, Any]:
        from .validation import parse_static

        return _values(parse_static(raw))

    conf = _conf(verdicts.remembered("ipam", subject, validate))
    if conf.node_state_file is not None:
        conf = replace(conf, range_sets=node_blocks(conf.node_state_file))
    return conf


def node_blocks(path: str) -> tuple[RangeSet, ...]:
    """One range set over every block the node daemon has claimed for this node."""
    state = node_state.read(path)
    if state is None:
        raise CNIError(
            Code.TRY_AGAIN_LATER,
            f"no address range: ipam names no subnet or ranges, and the node daemon has not "
            f"written {path} yet; start `calico-py node run` (cluster mode) or set ipam.subnet "
            "to this node's block (single node)", path)
    tunnel = ipaddress.ip_address(state.tunnel_address) if state.tunnel_address else None
    # The tunnel device holds the home block's first address: never hand it to a pod.
    ranges = tuple(Range(subnet=b, first=b[1] if b[0] == tunnel else b[0], last=b[-1], gateway=None,
                         path=f"{path}:blocks") for b in state.networks)
    return (RangeSet(index=0, ranges=ranges),)


def _values(conf: IpamConf) -> dict[str, Any]:
    return {
        "network": conf.network,
        "data_dir": conf.data_dir,
        "lock_timeout": conf.lock_timeout,
        "node_state_file": conf.node_state_file,
        "routes": [[str(r.dst), str(r.gw) if r.gw else None] for r in conf.routes],
        "range_sets": [[[str(r.subnet), str(r.first), str(r.last),
                         str(r.gateway) if r.gateway else None, r.path] for r in s.ranges]
                       for s in conf.range_sets],
    }


def _conf(values: dict[str, Any]) -> IpamConf:
    address = ipaddress.ip_address
    return IpamConf(
        network=values["network"],
        data_dir=values["data_dir"],
        lock_timeout=values["lock_timeout"],
        node_state_file=values["node_state_file"],
        routes=tuple(results.Route(dst=ipaddress.ip_network(dst), gw=address(gw) if gw else None)
                     for dst, gw in values["routes"]),
        range_sets=tuple(
            RangeSet(index=index, ranges=tuple(
                Range(subnet=ipaddress.ip_network(subnet), first=address(first), last=address(last),
                      gateway=address(gateway) if gateway else None, path=path)
                for subnet, first, last, gateway, path in ranges))
            for index, ranges in enumerate(values["range_sets"])),
    )
