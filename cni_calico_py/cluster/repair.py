"""What the node daemon found wrong in the kernel and put back: logged, journaled, counted.

The daemon follows the kernel (kernel_events.py) and, when something it
programs is deleted or changed, compares the kernel with its plan and puts
back only what is missing or wrong (routing.py, overlay.py); the periodic
resync does the same comparison as a safety net. Each object put back is a
`Fix`. Those found on a node whose plan was already in the kernel are
repairs: logged at info, appended to the node's repair journal
(core/repairs.py, which `calico-py explain` reads) and counted in the
metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network

from ..core import repairs
from ..core.logs import log


@dataclass(frozen=True)
class Fix:
    what: str  # route, blackhole, neigh, fdb, device
    key: str  # what explain matches: a route's destination ("192.168.73.64/26") or a device name
    found: str
    done: str


@dataclass(frozen=True)
class RouteShape:
    """What decides whether a route is right: its type and next hops, as BIRD and the kernel say."""

    type: str  # unicast, blackhole, unreachable, prohibit
    gateways: tuple[str, ...] = ()

    def text(self, dst: IPv4Network) -> str:
        head = str(dst) if self.type == "unicast" else f"{self.type} {dst}"
        return head + "".join(f" via {g}" for g in self.gateways)


def bird_drift(exported: Mapping[IPv4Network, RouteShape], kernel: Mapping[IPv4Network, RouteShape],
               pool: IPv4Network, protocol: str) -> list[Fix]:
    """The pool's routes BIRD writes to the kernel that the kernel lacks or holds otherwise."""
    fixes = []
    for dst, want in sorted(exported.items()):
        if not dst.subnet_of(pool):
            continue
        have = kernel.get(dst)
        if have == want:
            continue
        found = (f"{want.text(dst)} proto bird missing from the kernel" if have is None
                 else f"{have.text(dst)} proto bird in the kernel, BIRD has {want.text(dst)}")
        fixes.append(Fix("blackhole" if want.type == "blackhole" else "route", str(dst), found,
                         f"asked BIRD to write its routes to the kernel again (birdc reload out {protocol})"))
    return fixes


def report(fix: Fix) -> None:
    log.info("repaired %s %s: found %s; %s", fix.what, fix.key, fix.found, fix.done)
    repairs.record(by="node", what=fix.what, key=fix.key, found=fix.found, done=fix.done)
