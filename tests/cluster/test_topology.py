"""The cluster helpers themselves: nodes reach each other and etcd keeps its data."""

from __future__ import annotations

import os
import sys

import pytest

from tests.cluster.topology import etcd, underlay
from tests.netns import sh

pytestmark = pytest.mark.netns

STATUS_PROBE = """
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v3/maintenance/status", data=b"{}", method="POST")
print(urllib.request.urlopen(req, timeout=5).read().decode())
"""


def our_namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
            if line.startswith(prefix)]


def test_nodes_reach_each_other_and_etcd(root: None) -> None:
    with underlay() as ul:
        n1, n2 = ul.add_node(1), ul.add_node(2)
        remote = ul.add_remote_node(3)
        assert remote.ip == f"10.{ul.octet}.1.13"
        for target in (n2, remote):
            assert n1.exec("ping", "-c1", "-W2", target.ip, check=False).returncode == 0, target

        with etcd(ul) as store:
            store.etcdctl("put", "/cpt/key", "value")
            assert store.etcdctl("get", "--print-value-only", "/cpt/key").strip() == "value"

            old_pid = store.pid
            store.stop()
            store.start()
            assert store.etcdctl("get", "--print-value-only", "/cpt/key").strip() == "value"

            # From a node, as the plugin will see it: over the underlay, not etcd's loopback.
            status = n1.exec(sys.executable, "-c", STATUS_PROBE, store.endpoint).stdout
            assert '"version"' in status
            etcd_pids = [old_pid, store.pid]

        assert our_namespaces(ul.prefix)
    assert our_namespaces(ul.prefix) == []
    for pid in etcd_pids:
        assert pid is not None and not os.path.exists(f"/proc/{pid}")
