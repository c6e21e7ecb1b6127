"""`calico-py node run`: register the node, own its blocks, keep the node state current.

Each resync (every `resync_seconds`):
1. put the node's record (name, IP, AS, VTEP MAC) in the registry;
2. read the blocks etcd says this node owns, claim one if there is none;
3. write them to the node state file the IPAM reads on every ADD;
4. give back blocks that have held no address for `block_release_after_seconds`.

etcd down: the node state stays as it was, so ADDs go on using the owned
blocks; the daemon retries with a backoff and logs each attempt.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from ipam import node_state
from ipam.node_state import NodeState

from ..core import files
from ..core.errors import CNIError
from ..core.logs import log
from . import bird, bird_config, overlay, peers
from .blocks import home_first, vtep_mac
from .config import ClusterConfig
from .datastore import Datastore, DatastoreUnavailable, NodeRecord, PoolExhausted

if TYPE_CHECKING:
    from ipam.api import PoolStore

MAX_BACKOFF = 30.0


class NodeDaemon:
    def __init__(self, conf: ClusterConfig, node_ip: str) -> None:
        self.conf = conf
        self.node_ip = node_ip
        self.datastore = Datastore(conf.etcd_endpoints, conf.etcd_prefix, conf.etcd_timeout_seconds)
        self.pool = conf.pool
        # Idle blocks are first taken out of the node state (no new ADD uses
        # them), and given back to the pool one resync later, if still empty.
        self._empty_since: dict[IPv4Network, float] = {}
        self._retiring: dict[IPv4Network, float] = {}

    def record(self, tunnel: str | None) -> NodeRecord:
        return NodeRecord(self.conf.nodename, self.node_ip, self.conf.as_number,
                          vtep_mac(self.conf.nodename), tunnel)

    def base_state(self, tunnel: str | None) -> NodeState:
        c = self.conf
        return NodeState(
            nodename=c.nodename, node_ip=self.node_ip, pool=str(c.pool), block_size=c.block_size,
            encapsulation=c.encapsulation, etcd_endpoints=tuple(c.etcd_endpoints),
            etcd_prefix=c.etcd_prefix, etcd_timeout_seconds=c.etcd_timeout_seconds,
            tunnel_address=tunnel)

    def redetect_ip(self) -> None:
        """Follow a node whose address changed; a failed detection keeps the last good one."""
        from .autodetect import NodeIPError, detect

        try:
            found = str(detect(self.conf.ip_autodetection, self.conf.node_ip))
        except NodeIPError as err:
            log.warning("keeping node IP %s: %s", self.node_ip, err)
            return
        if found != self.node_ip:
            log.info("node IP changed from %s to %s", self.node_ip, found)
            self.node_ip = found

    def sync(self) -> NodeState:
        """One resync; raises DatastoreUnavailable when etcd does not answer."""
        name = self.conf.nodename
        nodes = self.datastore.nodes()
        with node_state.locked(self.conf.state_file):
            owners = self.datastore.blocks()
            owned = sorted(b for b, o in owners.items() if o == name and b.subnet_of(self.pool))
            if not owned:
                block = self.datastore.claim_block(name, self.pool, self.conf.block_size)
                owners[block] = name
                owned = [block]
            tunnel = self._tunnel_address(owned, nodes)
            previous = node_state.read(self.conf.state_file)
            # The first block is the node's home: it is never released.
            active = home_first([b for b in owned if b not in self._retiring], tunnel,
                                previous.networks if previous else [])
            state = self.base_state(str(tunnel) if tunnel else None).with_blocks(active)
            if previous != state:
                node_state.write(self.conf.state_file, state)
                log.info("node %s (%s) blocks: %s%s", name, state.node_ip, ", ".join(state.blocks),
                         f"; tunnel address {tunnel}" if tunnel else "")
        me = self.record(state.tunnel_address)
        self.datastore.register_node(me)
        self._release_idle(active)
        self._route(me, [n for n in nodes if n.name != name] + [me], owners)
        return state

    def _tunnel_address(self, owned: list[IPv4Network],
                        nodes: list[NodeRecord]) -> ipaddress.IPv4Address | None:
        """Keep the address the registry has for this node while its block is still owned."""
        if peers.encapsulation_overhead(self.conf.encapsulation) == 0:
            return None
        registered = next((n.tunnel_address for n in nodes
                           if n.name == self.conf.nodename and n.tunnel_address), None)
        if registered and any(ipaddress.IPv4Address(registered) in b for b in owned):
            return ipaddress.IPv4Address(registered)
        return peers.tunnel_address(owned)

    def _route(self, me: NodeRecord, nodes: list[NodeRecord],
               owners: dict[IPv4Network, str]) -> None:
        mtu = overlay.apply(self.conf.encapsulation, me, nodes, owners, self.pool)
        routing_daemon = bird.Bird(self.conf.bird_dir)
        if self.conf.encapsulation == "Off":
            text = bird_config.render(me, nodes, self.pool, self.conf.as_number,
                                      os.path.join(self.conf.bird_dir, "bird.log"))
            outcome = routing_daemon.apply(text)
            if outcome != "unchanged":
                log.info("BIRD %s with %d peer(s)", outcome, len(nodes) - 1)
        elif routing_daemon.running():
            routing_daemon.stop()
        _write_if_changed(self.conf.mtu_file, f"{mtu}\n")

    # -- giving idle blocks back
    def _release_idle(self, active: list[IPv4Network]) -> None:
        store = _pool_store(self.conf.cni_conflist)
        if store is None:
            return
        held, lock = store.held, store.locked
        now = time.monotonic()
        addresses = held()
        for block in active:
            if any(a in block for a in addresses):
                self._empty_since.pop(block, None)
            else:
                self._empty_since.setdefault(block, now)
        idle = [b for b in active[1:] if b in self._empty_since
                and now - self._empty_since[b] >= self.conf.block_release_after_seconds]
        for block in idle:
            with lock(), node_state.locked(self.conf.state_file):
                if any(a in block for a in held()):
                    continue
                current = node_state.read(self.conf.state_file)
                if current is not None:
                    node_state.write(self.conf.state_file, current.with_blocks(
                        [b for b in current.networks if b != block]))
                self._retiring[block] = now
                self._empty_since.pop(block, None)
                log.info("block %s idle for %.0f s: no new addresses from it", block,
                         self.conf.block_release_after_seconds)
        for block, since in list(self._retiring.items()):
            if block in idle or now - since < self.conf.resync_seconds:
                continue
            with lock():
                if any(a in block for a in held()):
                    # An ADD that read the old state got an address from it: keep it.
                    del self._retiring[block]
                    continue
                self.datastore.release_block(block, self.conf.nodename)
                del self._retiring[block]

    # -- the loop
    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                self.redetect_ip()
                self.sync()
                delay = 1.0
                stop.wait(self.conf.resync_seconds)
            except DatastoreUnavailable as err:
                log.warning("%s; pods keep working on blocks already owned; retrying in %.0f s",
                            err, delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except PoolExhausted as err:
                log.error("node %s owns no block: %s; retrying in %.0f s", self.conf.nodename,
                          err, MAX_BACKOFF)
                stop.wait(MAX_BACKOFF)
            except Exception:
                # A failed route or BIRD step must not end the daemon: pods on
                # this node keep working, and the next resync tries again.
                log.exception("resync failed; retrying in %.0f s", delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)


def _pool_store(conflist: str) -> PoolStore | None:
    """The IPAM store of the conflist's network, when its blocks are the pool's."""
    from ipam.api import ConflistError, pool_store

    try:
        return pool_store(conflist)
    except (ConflistError, CNIError) as err:
        log.debug("not releasing idle blocks: %s", err)
        return None


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            if file.read() == text:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    files.replace(path, text)
    log.info("pod MTU %s written to %s", text.strip(), path)


def serve(conf: ClusterConfig, node_ip: str, once: bool) -> int:
    overlay.preflight(conf.encapsulation)
    daemon = NodeDaemon(conf, node_ip)
    if once:
        state = daemon.sync()
        log.info("node %s synced once: blocks %s", state.nodename, ", ".join(state.blocks))
        return 0
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("node %s (%s) starting against %s", conf.nodename, node_ip,
             ", ".join(conf.etcd_endpoints))
    daemon.run(stop)
    log.info("node %s stopped", conf.nodename)
    return 0
