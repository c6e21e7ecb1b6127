"""The executable as a command-line tool, when no runtime is calling it."""

from __future__ import annotations

import argparse
from typing import TextIO

from . import __version__, versions

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
    return parser


def run_cli(args: list[str], program: str, stdout: TextIO) -> int:
    parser = _parser(program)
    options = parser.parse_args(args)
    if options.version:
        stdout.write(f"{program} {__version__} (CNI spec {', '.join(versions.SUPPORTED_VERSIONS)})\n")
        return 0
    if options.command == "ipam" and options.ipam_command == "show":
        from ipam.show import show

        return int(show(options.conf, options.json, stdout))
    if options.command == "ipam":
        parser.parse_args(["ipam", "--help"])
    stdout.write(ABOUT.format(prog=program) + "\n")
    return 0
