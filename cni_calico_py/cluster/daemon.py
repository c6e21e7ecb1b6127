"""`calico-py node run`: register the node, own its blocks, follow the cluster.

The daemon lists the cluster's nodes, blocks and liveness from the datastore
(etcd or the Kubernetes API, cni_calico_py/datastore) once, then follows each
with a watch (watch.py); a change wakes it and it applies what changed, within
milliseconds:
1. claims a block if the node owns none;
2. writes the node's blocks to the node state file the IPAM reads on every ADD;
3. writes the node's record, only when it differs from what the datastore holds;
4. brings routes, VXLAN entries and BIRD in line (routing.py).
Every `resync_seconds` it reads everything again and compares the kernel with
all of it (the safety net), and gives back blocks that have held no address
for `block_release_after_seconds`. Idle, it writes nothing to the datastore
but its liveness (liveness.py) and nothing to the kernel. Its first sync
finishes the claims and releases a kill cut short (datastore/ownership.py).

It also follows the kernel (kernel_events.py): when a route, VXLAN entry or
tunnel device it programs (or, in BGP modes, a route BIRD writes) is deleted
or changed, it puts back what is missing within milliseconds (repair.py).

Datastore down: the node state stays as it was, so ADDs go on using the owned
blocks; the daemon retries with a backoff and logs each attempt.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from ipaddress import IPv4Network

from ipam import node_state
from ipam.node_state import NodeState

from ..core.logs import log
from ..datastore.backend import Backend
from ..datastore.errors import DatastoreError, PoolExhausted
from ..datastore.model import NodeRecord
from ..datastore.ownership import BlockOwnership
from ..datastore.registry import ensure_pool, register
from ..datastore.settings import open_backend
from . import peers
from .blocks import home_first, vtep_mac
from .config import ClusterConfig
from .follower import Follower
from .liveness import DeadNodes
from .metrics import NodeMetrics
from .mirror import Mirror
from .release import IdleBlocks
from .routing import Routing

MAX_BACKOFF = 30.0
# Changes arriving together (a node's block, record and lease) are applied once.
SETTLE_SECONDS = 0.01


class NodeDaemon:
    def __init__(self, conf: ClusterConfig, node_ip: str, backend: Backend | None = None) -> None:
        self.conf = conf
        self.node_ip = node_ip
        self.backend = backend or open_backend(conf.datastore_settings)
        self.ownership = BlockOwnership(self.backend)
        self.pool = conf.pool
        self.routing = Routing(conf)
        self.wake = threading.Event()
        self.follower = Follower(self.backend, self._on_change, self._on_watch_end)
        # Blocks of this node whose claims it has checked (ownership.recover): none yet.
        self._recovered: set[IPv4Network] | None = None
        self._watch_ended: str | None = None
        self._address_changed = True
        # Set by the kernel monitor: something the daemon programs may have been undone.
        self._kernel_changed = False
        self.dead = DeadNodes(self.backend, conf.nodename, conf.dead_node_release_seconds)
        self.idle = IdleBlocks(self.ownership, conf)
        self.mirror = Mirror(self.backend, conf)
        # Set by the mirror's follower: an ADD or DEL changed the node's IPAM store.
        self._store_changed = True
        # Set by serve() when the config asks for metrics.
        self.metrics: NodeMetrics | None = None
        # When the first watch event since the last sync arrived.
        self._event_at: float | None = None

    def record(self, tunnel: str | None) -> NodeRecord:
        return NodeRecord(self.conf.nodename, self.node_ip, self.conf.as_number,
                          vtep_mac(self.conf.nodename), tunnel, self.conf.route_reflector_cluster_id)

    def base_state(self, tunnel: str | None) -> NodeState:
        c = self.conf
        return NodeState(
            nodename=c.nodename, node_ip=self.node_ip, pool=str(c.pool), block_size=c.block_size,
            encapsulation=c.routing_mode, datastore=c.datastore_settings, tunnel_address=tunnel)

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

    # -- what the daemon knows of the cluster
    def refresh(self, watch: bool = True) -> None:
        """List everything (the safety net) and follow it with new watches from there."""
        if watch:
            self._watch_ended = None
        self.follower.refresh(watch)

    def _on_change(self) -> None:
        if self._event_at is None:
            self._event_at = time.monotonic()
        self.wake.set()

    def _on_watch_end(self, reason: str) -> None:
        self._watch_ended = reason
        self.wake.set()

    def _mine(self, owners: dict[IPv4Network, str]) -> list[IPv4Network]:
        """The node's blocks of the pool, their claims checked whenever the set changes:
        a claim cut short (an ADD killed halfway, the daemon's last run) is finished or
        dropped first, so the node never uses a block without its confirmed affinity."""
        name = self.conf.nodename
        named = {b for b, o in owners.items() if o == name and b.subnet_of(self.pool)}
        if named != self._recovered:
            self.ownership.recover(name)
            self.follower.reread_blocks()
            owners.clear()
            owners.update(self.follower.known()[1])
            named = set(self.ownership.owned(name, self.pool))
            self._recovered = named
        return sorted(named)

    def sync(self, force: bool = False) -> NodeState:
        """Apply what the daemon knows; raises a DatastoreError when the datastore does not answer."""
        name = self.conf.nodename
        if self._recovered is None:
            ensure_pool(self.backend, self.conf.ippool)
        with node_state.locked(self.conf.state_file):
            previous = node_state.read(self.conf.state_file)
            nodes, owners, alive = self.follower.known()
            if previous and any(owners.get(b) != name for b in previous.networks):
                # An ADD claimed a block the watch has not brought yet (or the node
                # was removed): ask the datastore itself before writing the state.
                self.follower.reread_blocks()
                nodes, owners, alive = self.follower.known()
            owned = self._mine(owners)
            if not owned:
                block = self.ownership.claim(name, self.pool, self.conf.block_size)
                owners[block] = name
                owned = [block]
                self._recovered = {block}
            tunnel = self._tunnel_address(owned, nodes)
            # The first block is the node's home: it is never released.
            active = home_first([b for b in owned if b not in self.idle.retiring], tunnel,
                                previous.networks if previous else [])
            state = self.base_state(str(tunnel) if tunnel else None).with_blocks(active)
            if previous != state:
                node_state.write(self.conf.state_file, state)
                log.info("node %s (%s) blocks: %s%s", name, state.node_ip, ", ".join(state.blocks),
                         f"; tunnel address {tunnel}" if tunnel else "")
        me = self.record(state.tunnel_address)
        if next((n for n in nodes if n.name == name), None) != me:
            register(self.backend, me)
            self.follower.learn(me)
        everyone = [n for n in nodes if n.name != name] + [me]
        self.routing.apply(me, everyone, owners, force)
        self.dead.follow(everyone, alive, owners.values())
        if force or self._store_changed:
            self._store_changed = False
            self.mirror.apply(owned, self.follower.blocks())
        return state

    def _tunnel_address(self, owned: list[IPv4Network],
                        nodes: list[NodeRecord]) -> ipaddress.IPv4Address | None:
        """Keep the address the registry has for this node while its block is still owned."""
        if peers.encapsulation_overhead(self.conf.routing_mode) == 0:
            return None
        registered = next((n.tunnel_address for n in nodes
                           if n.name == self.conf.nodename and n.tunnel_address), None)
        if registered and any(ipaddress.IPv4Address(registered) in b for b in owned):
            return ipaddress.IPv4Address(registered)
        return peers.tunnel_address(owned)

    # -- nodes that died without `leave`
    # -- the loop
    def on_store_change(self) -> None:
        self._store_changed = True
        self.wake.set()

    def on_address_change(self) -> None:
        self._address_changed = True
        self.wake.set()

    def on_kernel_change(self, what: str) -> None:
        log.debug("kernel: %s changed", what)
        self._kernel_changed = True
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        next_refresh = next_idle_check = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            force = now >= next_refresh or self._watch_ended is not None
            kernel, self._kernel_changed = self._kernel_changed, False
            if now >= self.routing.recheck_at:
                self.routing.recheck_at = float("inf")
                kernel = True
            # Woken by the kernel alone: compare it with the plan, nothing else is due.
            synced = (force or not kernel or self._address_changed or self._store_changed
                      or self._event_at is not None)
            try:
                if self._watch_ended is not None:
                    log.info("re-reading the cluster: %s", self._watch_ended)
                if force:
                    self.refresh()
                    next_refresh = now + self.conf.resync_seconds
                if self._address_changed:
                    self._address_changed = False
                    self.redetect_ip()
                if synced:
                    event_at, self._event_at = self._event_at, None
                    started = time.monotonic()
                    self.sync(force)
                    if self.metrics is not None:
                        done = time.monotonic()
                        self.metrics.synced("resync" if force else "watch", done - started,
                                            done - event_at if event_at is not None else None)
                if kernel and not force:
                    # The resync compared everything already.
                    self.routing.repair()
                if now >= next_idle_check:
                    self.idle.release()
                    next_idle_check = now + self.idle.check_seconds
                delay = 1.0
            except PoolExhausted as err:
                log.error("node %s owns no block: %s; retrying in %.0f s", self.conf.nodename,
                          err, MAX_BACKOFF)
                next_refresh = time.monotonic() + MAX_BACKOFF
            except DatastoreError as err:
                if self.metrics is not None:
                    self.metrics.datastore_errors.inc()
                log.warning("%s; pods keep working on blocks already owned; retrying in %.0f s",
                            err, delay)
                next_refresh = time.monotonic() + delay
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception:
                # A failed route or BIRD step must not end the daemon: pods on
                # this node keep working, and the next resync tries again.
                log.exception("resync failed; retrying in %.0f s", delay)
                next_refresh = time.monotonic() + delay
                delay = min(delay * 2, MAX_BACKOFF)
            due = min(next_refresh, next_idle_check, self.dead.removal_due(), self.routing.recheck_at,
                      self.follower.next_lapse())
            timeout = max(due - time.monotonic(), 0.0)
            if self.wake.wait(timeout) and not stop.is_set():
                stop.wait(SETTLE_SECONDS)
            self.wake.clear()
        self.follower.stop()
        self.routing.close()
