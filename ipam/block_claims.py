"""Who owns which block of the pool, in etcd: the claims of the node daemon and of a full ADD.

Layout under the prefix (default `/calico-py/v1`):
`blocks/<address>-<length>`: `{"node", "claimed"}`, one key per owned block.

A block is claimed with a transaction that succeeds only while its key does
not exist, so of two nodes racing for one block exactly one wins; a block is
released only by a transaction that checks the owner is still the releaser.
The node daemon's datastore (cni_calico_py/cluster/datastore.py) adds the
node registry to this.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cni_calico_py.core.logs import log

from .blocks import block_count, block_from_key, block_key, claim_order

T = TypeVar("T")


class DatastoreUnavailable(Exception):
    """No etcd endpoint answered."""


class PoolExhausted(Exception):
    """Every block of the pool has an owner."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class BlockClaims:
    def __init__(self, endpoints: Iterable[str], prefix: str, timeout: float) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._preferred = 0

    def _block_key(self, block: IPv4Network) -> str:
        return f"{self.prefix}/blocks/{block_key(block)}"

    # -- transport
    def _client(self, endpoint: str) -> Any:
        if endpoint not in self._clients:
            import etcd3gw

            url = urlsplit(endpoint)
            self._clients[endpoint] = etcd3gw.client(
                host=url.hostname or "", port=url.port or 2379, protocol=url.scheme,
                timeout=self.timeout, api_path="/v3/")
        return self._clients[endpoint]

    def _call(self, what: str, action: Callable[[Any], T]) -> T:
        """Run `action` against the first endpoint that answers, starting with the last good one."""
        from etcd3gw import exceptions

        problems = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                value = action(self._client(endpoint))
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
                    exceptions.InternalServerError) as err:
                problems.append(f"{endpoint}: {type(err).__name__}")
                continue
            self._preferred = index
            return value
        raise DatastoreUnavailable(f"cannot {what}: no etcd endpoint answered ({'; '.join(problems)})")

    # -- blocks
    def blocks(self) -> dict[IPv4Network, str]:
        """Every owned block and its owner."""
        found = self._call("list blocks", lambda c: c.get_prefix(f"{self.prefix}/blocks/"))
        owners: dict[IPv4Network, str] = {}
        for value, meta in found:
            block = block_from_key(meta["key"].decode().rsplit("/", 1)[-1])
            try:
                owner = json.loads(value)["node"]
            except (ValueError, KeyError, TypeError):
                owner = "?"
            if block is not None:
                owners[block] = str(owner)
        return owners

    def owned_blocks(self, nodename: str, pool: IPv4Network) -> list[IPv4Network]:
        return sorted(b for b, owner in self.blocks().items()
                      if owner == nodename and b.subnet_of(pool))

    def claim_block(self, nodename: str, pool: IPv4Network, block_size: int) -> IPv4Network:
        """One more block of the pool for `nodename`; PoolExhausted when none is left."""
        taken = self.blocks()
        for block in claim_order(pool, block_size, taken, nodename):
            if self._create(self._block_key(block),
                            json.dumps({"node": nodename, "claimed": time.time()})):
                log.info("node %s claimed block %s", nodename, block)
                return block
            log.info("node %s lost the race for block %s; trying the next one", nodename, block)
        owners = sorted(set(taken.values()))
        raise PoolExhausted(
            f"pool {pool} has no free /{block_size} block: all {block_count(pool, block_size)} are "
            f"owned (by {', '.join(owners[:8])}{', ...' if len(owners) > 8 else ''}); "
            "grow the pool or release blocks of nodes that left")

    def _create(self, key: str, value: str) -> bool:
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "CREATE",
                         "create_revision": 0}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            "failure": [],
        }
        result = self._call(f"claim {key}", lambda c: c.transaction(txn))
        return bool(result.get("succeeded", False))

    def release_block(self, block: IPv4Network, nodename: str) -> bool:
        """Delete the block's key if `nodename` still owns it; False if it did not."""
        key = self._block_key(block)
        current = self._call(f"read block {block}", lambda c: c.get(key, metadata=True))
        if not current:
            return False
        value, meta = current[0]
        try:
            owner = json.loads(value)["node"]
        except (ValueError, KeyError, TypeError):
            owner = None
        if owner != nodename:
            return False
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "MOD",
                         "mod_revision": meta["mod_revision"]}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
            "failure": [],
        }
        result = self._call(f"release block {block}", lambda c: c.transaction(txn))
        released = bool(result.get("succeeded", False))
        if released:
            log.info("node %s released block %s", nodename, block)
        return released
