"""The benchmark's node: the tests' node (tests/netns.py), entered by this process.

The benchmark process enters the node namespace once (setns) and spawns the
plugins from there, so every plugin starts the same way and pays no
`ip netns exec`. Everything is named with a per-run prefix and removed at the
end, also after a failure or Ctrl-C; the machine's own namespace is never
changed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.netns import Node, inside, make_node

PREFIX = "cpb"
UPLINK_NET = "10.251.0"


def link_names() -> list[str]:
    """Names of the links of the node (the process is inside it)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


def routes_in(subnet: str) -> list[str]:
    """Routes of the node that fall inside `subnet` (the process is inside the node)."""
    out = subprocess.run(["ip", "-4", "route", "show", "root", subnet],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


@contextmanager
def entered_node() -> Iterator[Node]:
    """Make the node, move this process into it, and undo both at the end."""
    with make_node(prefix=PREFIX, net=UPLINK_NET) as node, inside(node.path):
        yield node
