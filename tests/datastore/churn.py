"""Claims and releases blocks for one node in a loop, until killed: the kill test's victim.

    python -m tests.datastore.churn ENDPOINT PREFIX NODE POOL SEED
"""

from __future__ import annotations

import random
import sys
from ipaddress import IPv4Network

from cni_calico_py.datastore.errors import DatastoreError
from cni_calico_py.datastore.etcd import EtcdBackend
from cni_calico_py.datastore.ownership import BlockOwnership


def main(endpoint: str, prefix: str, node: str, pool: str, seed: str) -> None:
    ownership = BlockOwnership(EtcdBackend([endpoint], prefix, 3.0))
    rng = random.Random(seed)
    network = IPv4Network(pool)
    while True:
        try:
            owned = ownership.owned(node, network)
            if owned and (len(owned) > 2 or rng.random() < 0.5):
                ownership.release(node, rng.choice(owned))
            else:
                ownership.claim(node, network, 28)
        except DatastoreError:
            continue


if __name__ == "__main__":
    main(*sys.argv[1:6])
