"""The executable as a command-line tool, when no runtime is calling it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from . import __version__
from .agent.framing import DEFAULT_SOCKET, OFF, SOCKET_ENV, socket_path
from .core import versions
from .core.errors import Code

DEFAULT_CLUSTER_CONFIG = "/etc/calico-py/node.yaml"

ABOUT = (
    "calico-py is a CNI plugin: a container runtime (containerd, CRI-O, podman, "
    "kubelet through its runtime) runs it with CNI_COMMAND set and the network "
    "config on stdin. Run `{prog} --help` for the commands an operator can use."
)


REPAIR_ENV = "CALICO_PY_REPAIR"


def _parser(program: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program,
        description="Calico-style routed pod networking for CNI runtimes. "
        "Without CNI_COMMAND in the environment it offers these operator commands.",
        epilog=f"CNI spec versions: {', '.join(versions.SUPPORTED_VERSIONS)}.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ipam = sub.add_parser("ipam", help="inspect the node's address block")
    ipam_sub = ipam.add_subparsers(dest="ipam_command", metavar="IPAM_COMMAND")
    show = ipam_sub.add_parser(
        "show", help="list the block's addresses: container, ifname, netns, age"
    )
    show.add_argument(
        "--conf", default="/etc/cni/net.d/10-calico-py.conflist",
        help="conflist (or single conf) whose IPAM section to read (default: %(default)s)",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    agent = sub.add_parser(
        "agent", help="run the node agent that keeps the plugin warm (or: agent status)"
    )
    agent.add_argument("action", nargs="?", choices=["run", "status"], default="run")
    agent.add_argument(
        "--socket", default=None,
        help=f"unix socket path (default: ${SOCKET_ENV} unless it is {OFF!r}, else "
        f"{DEFAULT_SOCKET})",
    )
    agent.add_argument("--json", action="store_true", help="status as JSON")
    agent.add_argument("--workers", type=int, default=None,
                       help="requests served at once (default: four per core, at least 4)")
    agent.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics "
                       "(default: off)")
    agent.add_argument("--no-repair", action="store_true",
                       help="do not put back what ADD wired when something removes it "
                       f"(also ${REPAIR_ENV}=off; default: repair)")
    node = sub.add_parser(
        "node", help="cluster mode: run the node daemon, show the cluster, detect the node IP")
    node.add_argument("action", choices=["run", "status", "ready", "detect-ip", "leave", "config"],
                      help="run: register and keep this node's blocks; status: nodes, IPs, blocks; "
                      "ready: exit 0 once this node has a block and, in BGP modes, every BGP "
                      "session is established (a readiness probe: it asks the datastore nothing); "
                      "detect-ip: print the node IP autodetection's answer; leave NAME: take a "
                      "node out of the registry and give its blocks back; config: the effective "
                      "settings and where each came from (the file, a Calico environment "
                      "variable, or the default)")
    node.add_argument("name", nargs="?", help="the node to remove (leave only)")
    node.add_argument("--config", default=DEFAULT_CLUSTER_CONFIG,
                      help="cluster config file (default: %(default)s)")
    node.add_argument("--once", action="store_true", help="run: one resync, then exit")
    node.add_argument("--method", help="detect-ip: the method to try instead of the config's "
                      "(first-found, can-reach=IP, interface=REGEX, cidr=CIDR)")
    node.add_argument("--json", action="store_true", help="status or config as JSON")
    node.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                      help="what to log on stderr (default: info for run, else warning)")
    repaired = sub.add_parser(
        "repairs", help="what the agent and the node daemon put back on this node lately",
        description="The node's recent repairs, oldest first: when, by whom, what was found "
        "and what was done (from the repair journal, $CALICO_PY_REPAIRS or "
        "/run/calico-py/repairs.jsonl).")
    repaired.add_argument("--since", type=float, default=3600.0, metavar="SECONDS",
                          help="how far back (default: %(default)g)")
    repaired.add_argument("--json", action="store_true", help="one JSON object per repair")
    explain = sub.add_parser(
        "explain", help="walk one packet from a pod of this node to another pod, hop by hop",
        description="Follow a packet from SRC (a pod of this node) to DST through the live "
        "state: the pod's route, its host veth, the node's route lookup, the tunnel or BGP "
        "session, and what the node owning DST's block must do. Names the first broken hop.")
    explain.add_argument("src", metavar="SRC",
                         help="the source pod: its IP, or <namespace>/<name> (a pod of this node)")
    explain.add_argument("dst", metavar="DST", help="the destination pod: its IP, or "
                         "<namespace>/<name> when it is a pod of this node")
    explain.add_argument("--conf", default="/etc/cni/net.d/10-calico-py.conflist",
                         help="the conflist whose IPAM store says who holds which address "
                         "(default: %(default)s)")
    explain.add_argument("--config", default=DEFAULT_CLUSTER_CONFIG,
                         help="cluster config file; without it the node runs alone "
                         "(default: %(default)s)")
    explain.add_argument("--json", action="store_true", help="the hops as JSON")
    _install_cni_parser(sub)
    return parser


def _install_cni_parser(sub: Any) -> None:
    install = sub.add_parser(
        "install-cni", help="put the plugin on this node from its image (the DaemonSet's "
        "init container)",
        description="Copy the frozen build into the node's CNI bin dir as calico-py.d/ with "
        "calico-py and calico-py-ipam linked to its launcher (as `make install`; the old build "
        "is exchanged whole), write a kubeconfig from the pod's service account (not with "
        "DATASTORE_TYPE=etcdv3), and last the conflist from $CNI_NETWORK_CONFIG (or the file "
        "$CNI_NETWORK_CONFIG_FILE), in which __KUBECONFIG_FILEPATH__ becomes the kubeconfig's "
        "path on the node.")
    install.add_argument("--source", metavar="DIR",
                         help="the build to install (default: the frozen build running this)")
    install.add_argument("--bin-dir", metavar="DIR",
                         help="the node's CNI bin dir as mounted here (default: $CNI_BIN_DIR, "
                         "else /host/opt/cni/bin)")
    install.add_argument("--conf-dir", metavar="DIR",
                         help="the node's CNI conf dir as mounted here (default: $CNI_CONF_DIR, "
                         "else /host/etc/cni/net.d)")
    install.add_argument("--host-conf-dir", metavar="DIR",
                         help="the same directory as the node sees it, for the kubeconfig's path "
                         "(default: $CNI_NET_DIR, else /etc/cni/net.d)")
    install.add_argument("--conf-name", metavar="NAME",
                         help="the conflist's file name (default: $CNI_CONF_NAME, else "
                         "10-calico-py.conflist)")
    install.add_argument("--service-account", metavar="DIR",
                         help="where the pod's token and ca.crt are (default: "
                         "/var/run/secrets/kubernetes.io/serviceaccount)")


def _write_node_config(values: dict[str, Any], sources: dict[str, str], as_json: bool,
                       stdout: TextIO) -> int:
    if as_json:
        stdout.write(json.dumps({key: {"value": value, "source": sources[key]}
                                 for key, value in values.items()}, indent=2) + "\n")
        return 0
    rows = [("SETTING", "VALUE", "FROM")]
    rows += [(key, json.dumps(value) if not isinstance(value, str) else value, sources[key])
             for key, value in values.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for key, value, source in rows:
        stdout.write(f"{key:<{widths[0]}}  {value:<{widths[1]}}  {source}\n")
    return 0


def _explain(options: argparse.Namespace, stdout: TextIO) -> int:
    from ipam.conflist import ConflistError

    from .core.errors import CNIError
    from .explain import report, walk

    try:
        explanation = walk.explain(options.src, options.dst, options.conf, options.config)
    except (walk.ExplainError, ConflistError) as err:
        print(f"calico-py explain: {err}", file=sys.stderr)
        return 2
    except CNIError as err:
        print(f"calico-py explain: {err.msg}", file=sys.stderr)
        return 2
    return report.write(explanation, options.json, stdout)


def _node(options: argparse.Namespace, stdout: TextIO) -> int:
    from .cluster import autodetect, config, serve, status
    from .cluster.bird import BirdError
    from .cluster.overlay import OverlayError
    from .core import logs
    from .core.errors import CNIError
    from .datastore.errors import DatastoreError
    from .datastore.registry import remove_node
    from .datastore.settings import open_backend

    logs.configure(options.log_level or ("info" if options.action == "run" else "warning"))
    try:
        conf, sources = config.load_with_sources(options.config)
        if options.action == "config":
            return _write_node_config(conf.model_dump(mode="json"), sources, options.json, stdout)
        if options.action == "status":
            return status.write(status.gather(conf), options.json, stdout)
        if options.action == "ready":
            problems = status.not_ready(conf)
            stdout.write("; ".join(problems) + "\n" if problems else "ready\n")
            return 1 if problems else 0
        if options.action == "leave":
            if not options.name:
                raise CNIError(Code.INVALID_NETWORK_CONFIG, "node leave needs the node's name")
            released = remove_node(open_backend(conf.datastore_settings), options.name)
            stdout.write(f"node {options.name} removed; blocks released: "
                         f"{', '.join(map(str, released)) or 'none'}\n")
            return 0
        method = options.method or conf.ip_autodetection
        node_ip = autodetect.detect(method, None if options.method else conf.node_ip)
        if options.action == "detect-ip":
            stdout.write(f"{node_ip}\n")
            return 0
        return serve.serve(conf, str(node_ip), options.once)
    except (CNIError, autodetect.NodeIPError, DatastoreError, OverlayError, BirdError) as err:
        print(f"calico-py node {options.action}: {err}", file=sys.stderr)
        return 1


def _agent(action: str, path: str, as_json: bool, workers: int | None,
           metrics_port: int | None, stdout: TextIO, repair: bool = True) -> int:
    from .agent import server

    if action == "run":
        if workers is not None and workers < 1:
            print("calico-py agent: --workers must be at least 1", file=sys.stderr)
            return 2
        if metrics_port is not None and not 1 <= metrics_port <= 65535:
            print("calico-py agent: --metrics-port must be a port number, 1 to 65535",
                  file=sys.stderr)
            return 2
        return server.serve_forever(path, workers, metrics_port, repair)
    state = server.status(path)
    if state is None:
        stdout.write(f"agent: not running (nothing answers on {path})\n")
        return 1
    if as_json:
        stdout.write(json.dumps(state) + "\n")
        return 0
    stdout.write(f"agent: up, version {state['version']}, pid {state['pid']}, "
                 f"{state.get('workers', '?')} workers, up {state['uptime_s']} s\n")
    for verb, count in sorted(state["served"].items()):
        lat = state["latency_ms"].get(verb, {})
        failed = state["failed"].get(verb, 0)
        stdout.write(f"  {verb:<6} served {count:>6} failed {failed:>4}  latency ms "
                     + " ".join(f"{k} {v}" for k, v in lat.items()) + "\n")
    repaired = state.get("repairs") or {}
    if repaired:
        stdout.write("  repaired " + ", ".join(f"{what} {n}" for what, n in sorted(repaired.items()))
                     + " (calico-py repairs lists them)\n")
    return 0


def _repairs(since: float, as_json: bool, stdout: TextIO) -> int:
    import time
    from dataclasses import asdict

    from .core import repairs

    found = repairs.recent(since)
    for repair in found:
        if as_json:
            stdout.write(json.dumps(asdict(repair)) + "\n")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(repair.at))
        stdout.write(f"{when}  {repair.by:<5}  {repair.what:<9}  {repair.found}; {repair.done}\n")
    if not found and not as_json:
        stdout.write(f"no repairs in the last {since:g} s\n")
    return 0


def run_cli(args: list[str], program: str, stdout: TextIO) -> int:
    parser = _parser(program)
    options = parser.parse_args(args)
    if options.version:
        stdout.write(f"{program} {__version__} (CNI spec {', '.join(versions.SUPPORTED_VERSIONS)})\n")
        return 0
    if options.command == "agent":
        # "off" turns the callers' forwarding off; it is never a path.
        path = options.socket or socket_path(os.environ) or DEFAULT_SOCKET
        if path == OFF:
            print(f"calico-py agent: --socket {OFF!r} is not a socket path", file=sys.stderr)
            return 2
        repair = not options.no_repair and os.environ.get(REPAIR_ENV, "") != "off"
        return _agent(options.action, path, options.json, options.workers,
                      options.metrics_port, stdout, repair)
    if options.command == "node":
        return _node(options, stdout)
    if options.command == "explain":
        return _explain(options, stdout)
    if options.command == "repairs":
        return _repairs(options.since, options.json, stdout)
    if options.command == "install-cni":
        from .install.command import Options, run

        return run(Options(options.source, options.bin_dir, options.conf_dir,
                           options.host_conf_dir, options.conf_name, options.service_account),
                   os.environ, sys.stderr)
    if options.command == "ipam" and options.ipam_command == "show":
        from ipam.show import show

        return int(show(options.conf, options.json, stdout))
    if options.command == "ipam":
        parser.parse_args(["ipam", "--help"])
    stdout.write(ABOUT.format(prog=program) + "\n")
    return 0
