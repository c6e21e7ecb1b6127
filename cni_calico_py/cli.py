"""The executable as a command-line tool, when no runtime is calling it."""

from __future__ import annotations

import argparse
import json
import os
from typing import TextIO

from . import __version__, versions
from .agent.framing import DEFAULT_SOCKET, SOCKET_ENV

ABOUT = (
    "calico-py is a CNI plugin: a container runtime (containerd, CRI-O, podman, "
    "kubelet through its runtime) runs it with CNI_COMMAND set and the network "
    "config on stdin. Run `{prog} --help` for the commands an operator can use."
)


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
        help=f"unix socket path (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})",
    )
    agent.add_argument("--json", action="store_true", help="status as JSON")
    return parser


def _agent(action: str, path: str, as_json: bool, stdout: TextIO) -> int:
    from .agent import server

    if action == "run":
        return server.serve_forever(path)
    state = server.status(path)
    if state is None:
        stdout.write(f"agent: not running (nothing answers on {path})\n")
        return 1
    if as_json:
        stdout.write(json.dumps(state) + "\n")
        return 0
    stdout.write(f"agent: up, version {state['version']}, pid {state['pid']}, "
                 f"up {state['uptime_s']} s\n")
    for verb, count in sorted(state["served"].items()):
        lat = state["latency_ms"].get(verb, {})
        failed = state["failed"].get(verb, 0)
        stdout.write(f"  {verb:<6} served {count:>6} failed {failed:>4}  latency ms "
                     + " ".join(f"{k} {v}" for k, v in lat.items()) + "\n")
    return 0


def run_cli(args: list[str], program: str, stdout: TextIO) -> int:
    parser = _parser(program)
    options = parser.parse_args(args)
    if options.version:
        stdout.write(f"{program} {__version__} (CNI spec {', '.join(versions.SUPPORTED_VERSIONS)})\n")
        return 0
    if options.command == "agent":
        path = options.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
        return _agent(options.action, path, options.json, stdout)
    if options.command == "ipam" and options.ipam_command == "show":
        from ipam.show import show

        return int(show(options.conf, options.json, stdout))
    if options.command == "ipam":
        parser.parse_args(["ipam", "--help"])
    stdout.write(ABOUT.format(prog=program) + "\n")
    return 0
