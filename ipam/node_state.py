"""The node-local state the node daemon writes and the IPAM reads on every ADD.

One JSON file (default /var/lib/calico-py/node-state.json) holding what an
ADD needs without asking the datastore: the node's blocks, and where the
datastore and the pool are for the rare ADD that finds every block full and
claims another. Writers
hold `<file>.lock`; readers need no lock since the file is replaced whole.

This module is the contract between the two: the node daemon
(cni_calico_py/cluster) writes the file through it, the IPAM reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Network

from cni_calico_py.core import files, locks
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.datastore.settings import DatastoreSettings

# 2: the datastore's settings in one `datastore` field (1 had etcd_* fields; still read).
FORMAT = 2
# Encapsulation modes where BIRD, not the IPAM, holds the `blackhole <block>`
# route of each of the node's blocks (for as long as the node owns the block).
BIRD_MODES = ("Off", "IPIP", "IPIPCrossSubnet")
DEFAULT_STATE_FILE = "/var/lib/calico-py/node-state.json"


@dataclass(frozen=True)
class NodeState:
    nodename: str
    node_ip: str
    pool: str
    block_size: int
    encapsulation: str
    datastore: DatastoreSettings
    blocks: tuple[str, ...] = field(default_factory=tuple)
    # VXLAN/IPIP: the first address of the first block belongs to the tunnel device.
    tunnel_address: str | None = None
    # The format the file had when read: an older one differs from any state the daemon
    # makes, so the daemon writes the file anew.
    format: int = FORMAT

    @property
    def networks(self) -> list[IPv4Network]:
        return [IPv4Network(b) for b in self.blocks]

    @property
    def bird_holds_blackholes(self) -> bool:
        return self.encapsulation in BIRD_MODES

    def with_blocks(self, blocks: list[IPv4Network]) -> NodeState:
        return replace(self, blocks=tuple(str(b) for b in blocks))


def read(path: str) -> NodeState | None:
    """The state, None when the daemon has not written it yet; error 5 when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CNIError(Code.IO_FAILURE, f"cannot read the node state {path}: {err}; "
                       "restarting `calico-py node` rewrites it", path) from None
    try:
        data["format"] = int(data.get("format", 1))
        if data["format"] == 1:
            data["datastore"] = {"etcd_endpoints": data.pop("etcd_endpoints"),
                                 "etcd_prefix": data.pop("etcd_prefix"),
                                 "timeout_seconds": data.pop("etcd_timeout_seconds")}
        data["datastore"] = DatastoreSettings.from_dict(data["datastore"])
        data["blocks"] = tuple(data["blocks"])
        state = NodeState(**data)
        state.networks  # noqa: B018 - parse every block now, not halfway through an ADD
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise CNIError(Code.IO_FAILURE, f"the node state {path} is damaged ({err}); "
                       "restarting `calico-py node` rewrites it", path) from None
    return state


def write(path: str, state: NodeState) -> None:
    """Replace the file whole: a reader sees the old state or the new one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fields = {k: v for k, v in asdict(state).items() if k != "format"}
    data = {"format": FORMAT, **fields, "datastore": state.datastore.to_dict()}
    files.replace(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def locked(path: str, timeout: float = 10.0) -> Iterator[None]:
    """Serialises the daemon's resync and an ADD's claim of a new block."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with locks.held(f"{path}.lock", timeout, where="the node state lock was taken",
                    busy=f"the node state lock {path}.lock is held by another process after "
                         f"{timeout:g} s; try again later"):
        yield
