"""Claims and releases blocks for one node in a loop, until killed: the kill test's victim.

    python -m tests.datastore.churn SETTINGS_JSON NODE POOL SEED

SETTINGS_JSON: the datastore's settings (datastore/settings.py, as the node state has them).
"""

from __future__ import annotations

import json
import random
import sys
from ipaddress import IPv4Network

from cni_calico_py.datastore.errors import DatastoreError
from cni_calico_py.datastore.ownership import BlockOwnership
from cni_calico_py.datastore.settings import DatastoreSettings, open_backend


def main(settings: str, node: str, pool: str, seed: str) -> None:
    ownership = BlockOwnership(open_backend(DatastoreSettings.from_dict(json.loads(settings))))
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
    main(*sys.argv[1:5])
