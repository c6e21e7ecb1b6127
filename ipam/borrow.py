"""Cluster mode: an ADD that finds every block of the node full claims one more.

This is the only ADD path that talks to the datastore (etcd or the Kubernetes
API, through cni_calico_py/datastore); every other ADD reads the
node state file alone. The claim happens under the node state lock, so ADDs
that fill the last block together claim one new block, not one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network

from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.logs import log
from cni_calico_py.core.results import IPNetwork

from . import node_state


def claim_block(state_path: str, seen: Sequence[IPNetwork], exhausted: CNIError) -> None:
    """Add a block to the node state, unless someone did since `seen` was read."""
    from cni_calico_py.datastore.errors import DatastoreError, PoolExhausted
    from cni_calico_py.datastore.ownership import BlockOwnership
    from cni_calico_py.datastore.settings import open_backend

    with node_state.locked(state_path):
        state = node_state.read(state_path)
        if state is None or list(state.networks) != list(seen):
            return
        try:
            ownership = BlockOwnership(open_backend(state.datastore))
            block = ownership.claim(state.nodename, IPv4Network(state.pool), state.block_size)
        except PoolExhausted as err:
            raise CNIError(Code.ADDRESS_EXHAUSTED, f"{exhausted.msg.split(';')[0]}, and {err}",
                           state.pool) from None
        except DatastoreError as err:
            raise CNIError(
                Code.TRY_AGAIN_LATER,
                f"{exhausted.msg.split(';')[0]}, and claiming another block of pool {state.pool} "
                f"failed: {err}. Running pods keep their addresses; ADD works again once "
                f"{state.datastore.describe()} answers or a pod is deleted", state.pool) from None
        node_state.write(state_path, state.with_blocks([*state.networks, block]))
        log.info("node %s: every block was full; claimed %s", state.nodename, block)
