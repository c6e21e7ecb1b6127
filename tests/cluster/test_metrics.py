"""The node daemon's Prometheus metrics, scraped from the node: blocks, addresses, peers,
datastore errors."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import Cluster
from tests.cluster.daemons import block_of, running
from tests.cluster.topology import ClusterNode
from tests.netns import inside, wait_for

pytestmark = pytest.mark.netns

PORT = 9467


def scrape(node: ClusterNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with inside(f"/run/netns/{node.name}"), \
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_node_metrics_follow_blocks_pods_peers_and_datastore_errors(cluster: Cluster) -> None:
    n1, n2 = cluster.underlay.add_node(1), cluster.underlay.add_node(2)
    with running(cluster, [n1], "Off", metrics_port=PORT) as daemons:
        pod = cluster.pod(n1)
        pod.add()
        block = block_of(cluster, n1)
        samples = scrape(n1)
        assert value(samples, "calico_py_node_blocks_owned") == 1
        assert value(samples, "calico_py_node_block_addresses_in_use", block=block) == 1
        assert value(samples, "calico_py_node_block_addresses", block=block) == 64
        assert value(samples, "calico_py_node_syncs_total", trigger="resync") >= 1
        # A second node joins: n1 learns it through its watch and peers with it.
        daemons.start(n2, "Off")
        wait_for(lambda: value(scrape(n1), "calico_py_node_bgp_peer_up", peer=n2.ip,
                               state="Established") == 1, what="the BGP session in the metrics",
                 timeout=30)
        samples = scrape(n1)
        assert value(samples, "calico_py_node_syncs_total", trigger="watch") >= 1
        assert value(samples, "calico_py_node_watch_latency_seconds_count") >= 1
        assert value(samples, "calico_py_node_datastore_errors_total") == 0
        # The datastore goes away: the failed re-reads are counted.
        cluster.store.stop()
        try:
            wait_for(lambda: value(scrape(n1), "calico_py_node_datastore_errors_total") >= 1,
                     what="a datastore error counted", timeout=30)
        finally:
            cluster.store.start()
        pod.delete()
        assert value(scrape(n1), "calico_py_node_block_addresses_in_use", block=block) == 0
