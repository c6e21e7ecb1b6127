"""The node daemon's Prometheus metrics, on 127.0.0.1:`metrics_port` when the config sets one.

Counters and histograms are updated by the daemon's loop (syncs, watch
latency, datastore errors, repairs of what something else undid in the kernel).
What the node holds is read when scraped: its blocks from the node state
file, the addresses in use from the IPAM's store, and the BGP sessions from
BIRD.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ipam import node_state
from ipam.api import ConflistError, network_view

from ..core.errors import CNIError
from .config import ClusterConfig
from .peers import uses_bird
from .repair import Fix

ADDRESS = "127.0.0.1"
# The daemon's own (fdb, neigh, device, and routes to other nodes' blocks), and the pod
# repairer's in the daemon (a pod's route, its veth's link state and settings, blackholes).
REPAIRED = ("route", "blackhole", "neigh", "fdb", "device", "link", "sysctl")
SYNC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _NodeState(Collector):
    def __init__(self, conf: ClusterConfig) -> None:
        self.conf = conf

    def collect(self) -> Iterator[GaugeMetricFamily]:
        owned = GaugeMetricFamily("calico_py_node_blocks_owned",
                                  "Blocks this node holds (its node state file)")
        in_use = GaugeMetricFamily("calico_py_node_block_addresses_in_use",
                                   "Addresses reserved in each of this node's blocks", labels=["block"])
        size = GaugeMetricFamily("calico_py_node_block_addresses",
                                 "Addresses in each of this node's blocks", labels=["block"])
        peers = GaugeMetricFamily("calico_py_node_bgp_peer_up",
                                  "1 when the BGP session to the peer is Established, else 0",
                                  labels=["peer", "state"])
        try:
            state = node_state.read(self.conf.state_file)
        except CNIError:
            state = None
        blocks = state.networks if state else []
        owned.add_metric([], len(blocks))
        try:
            holders = network_view(self.conf.cni_conflist).holders
        except (ConflistError, CNIError):
            holders = {}
        for block in blocks:
            in_use.add_metric([str(block)], sum(1 for address in holders if address in block))
            size.add_metric([str(block)], block.num_addresses)
        if uses_bird(self.conf.routing_mode):
            from .bird import Bird

            for peer, session in sorted(Bird(self.conf.bird_dir).peer_states().items()):
                peers.add_metric([peer, session], 1 if session == "Established" else 0)
        yield from (owned, in_use, size, peers)


class NodeMetrics:
    def __init__(self, conf: ClusterConfig) -> None:
        self.registry = CollectorRegistry()
        self.syncs = Counter("calico_py_node_syncs", "Times the daemon applied the cluster's state",
                             ["trigger"], registry=self.registry)
        self.sync_seconds = Histogram(
            "calico_py_node_sync_duration_seconds",
            "Time to apply the cluster's state: a full resync, or what a watch event changed",
            ["trigger"], buckets=SYNC_BUCKETS, registry=self.registry)
        self.watch_latency = Histogram(
            "calico_py_node_watch_latency_seconds",
            "From a watch event's arrival to its change being applied", buckets=SYNC_BUCKETS,
            registry=self.registry)
        self.datastore_errors = Counter("calico_py_node_datastore_errors",
                                        "Resyncs that failed because the datastore did not answer",
                                        registry=self.registry)
        self.repairs = Counter(
            "calico_py_node_repairs",
            "Objects the daemon put back after something else deleted or changed them in the kernel, "
            "by kind: route, blackhole, neigh, fdb, device", ["what"], registry=self.registry)
        for what in REPAIRED:
            self.repairs.labels(what)
        self.registry.register(_NodeState(conf))

    def repaired(self, fix: Fix) -> None:
        self.repairs.labels(fix.what).inc()

    def repaired_pod(self, what: str) -> None:
        self.repairs.labels(what).inc()

    def synced(self, trigger: str, seconds: float, since_event: float | None) -> None:
        self.syncs.labels(trigger).inc()
        self.sync_seconds.labels(trigger).observe(seconds)
        if since_event is not None:
            self.watch_latency.observe(since_event)

    def serve(self, port: int) -> None:
        start_http_server(port, addr=ADDRESS, registry=self.registry)
