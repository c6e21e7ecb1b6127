"""`calico-py node status`: the registry as the datastore has it, and this node's view."""

from __future__ import annotations

import json
from typing import Any, TextIO

from ipam import node_state

from ..datastore.errors import DatastoreError
from ..datastore.registry import read_cluster
from ..datastore.settings import open_backend
from .config import ClusterConfig
from .peers import uses_bird


def bgp_peer_states(conf: ClusterConfig) -> dict[str, str]:
    """Peer IP -> BIRD's session state; empty outside BGP mode or while BIRD is down."""
    from .bird import Bird

    return Bird(conf.bird_dir).peer_states() if uses_bird(conf.routing_mode) else {}


def not_ready(conf: ClusterConfig) -> list[str]:
    """Why this node cannot serve pods yet (nothing: it can), from its own files and BIRD
    only, so a readiness probe asks the datastore nothing: no block claimed yet; in BGP
    modes, BIRD down or a session to a peer not established (as Calico's bird-ready)."""
    local = node_state.read(conf.state_file)
    problems = [] if local and local.blocks else ["no block claimed yet (the node state has none)"]
    if uses_bird(conf.routing_mode):
        from .bird import Bird

        bird = Bird(conf.bird_dir)
        if not bird.running():
            problems.append("BIRD is not running")
        else:
            down = sorted(ip for ip, state in bird.peer_states().items() if state != "Established")
            if down:
                problems.append(f"BGP not established with {', '.join(down)}")
    return problems


def gather(conf: ClusterConfig) -> dict[str, Any]:
    local = node_state.read(conf.state_file)
    report: dict[str, Any] = {
        "nodename": conf.nodename,
        "encapsulation": conf.encapsulation,
        "pool": str(conf.pool),
        "localBlocks": list(local.blocks) if local else [],
        "nodes": [],
        "error": None,
    }
    try:
        cluster = read_cluster(open_backend(conf.datastore_settings))
        owners, nodes, alive = cluster.owners(), cluster.node_list(), cluster.alive()
    except DatastoreError as err:
        report["error"] = str(err)
        return report
    peers = bgp_peer_states(conf)
    bgp = uses_bird(conf.routing_mode)
    for node in nodes:
        default = "self" if node.name == conf.nodename else None
        peer = peers.get(node.ip.split("/")[0], default if not bgp or default else "not peered")
        report["nodes"].append({
            "name": node.name, "ip": node.ip, "asNumber": node.as_number, "vtepMac": node.vtep_mac,
            "blocks": [str(b) for b in sorted(b for b, owner in owners.items()
                                              if owner == node.name)],
            "peer": peer,
            # False once its liveness lapsed: it died without `node leave`.
            "alive": node.name in alive,
            "routeReflector": node.route_reflector,
        })
    return report


def write(report: dict[str, Any], as_json: bool, out: TextIO) -> int:
    if as_json:
        out.write(json.dumps(report, indent=2) + "\n")
        return 1 if report["error"] else 0
    out.write(f"node {report['nodename']}, pool {report['pool']}, encapsulation "
              f"{report['encapsulation']}\n")
    out.write(f"local blocks (node state): {', '.join(report['localBlocks']) or 'none'}\n")
    if report["error"]:
        out.write(f"datastore: {report['error']}\n")
        return 1
    table = [("NAME", "IP", "AS", "VTEP MAC", "BLOCKS", "STATE", "PEER")]
    table += [(n["name"], n["ip"], str(n["asNumber"]), n["vtepMac"], ", ".join(n["blocks"]) or "-",
               ("up" if n["alive"] else "down") + (" (reflector)" if n["routeReflector"] else ""),
               n["peer"] or "-") for n in report["nodes"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0
