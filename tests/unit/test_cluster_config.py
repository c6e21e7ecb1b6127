"""The cluster config's checks and the pure block arithmetic."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico_py.cluster import config
from cni_calico_py.cluster.blocks import home_first, vtep_mac
from cni_calico_py.core.errors import CNIError
from cni_calico_py.datastore.ownership import claim_order

BASE = {"etcd_endpoints": ["http://10.99.0.1:23790"], "pool": "192.168.0.0/16", "nodename": "n1"}


def test_defaults_and_yaml_off() -> None:
    conf = config.parse(yaml.safe_load("encapsulation: Off\n" + yaml.safe_dump(BASE)), "f")
    assert (conf.encapsulation, conf.block_size, conf.as_number) == ("Off", 26, 64512)


EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "node.yaml.example"


def test_the_example_documents_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?([a-z_]+):", text, re.M))
    assert documented >= set(config.ClusterConfig.model_fields), (
        set(config.ClusterConfig.model_fields) - documented)
    assert documented <= set(config.ClusterConfig.model_fields)
    example = config.parse(yaml.safe_load(text), str(EXAMPLE))
    defaults = config.parse({"etcd_endpoints": example.etcd_endpoints, "pool": str(example.pool),
                             "nodename": example.nodename}, "defaults")
    assert example == defaults


def test_route_reflector_cluster_id_is_an_address() -> None:
    assert config.parse({**BASE, "route_reflector_cluster_id": "224.0.0.1"}, "f").route_reflector_cluster_id
    with pytest.raises(CNIError, match="not a cluster ID"):
        config.parse({**BASE, "route_reflector_cluster_id": "rr-1"}, "f")


@pytest.mark.parametrize(("change", "words"), [
    ({"pool": "192.168.0.0/27"}, "block_size /26 is larger than the pool"),
    ({"etcd_endpoints": ["10.99.0.1"]}, "is not an endpoint like"),
    ({"etcd_endpoints": []}, "etcd_endpoints"),
    ({"encapsulation": "GRE"}, "encapsulation"),
    ({"nodename": "Node_1"}, "not a node name"),
    ({"pool": "192.168.0.1/16"}, "pool"),
    ({"as_numbr": 1}, "as_numbr"),
])
def test_bad_settings_are_error_7_naming_the_key(change: dict[str, Any], words: str) -> None:
    with pytest.raises(CNIError) as caught:
        config.parse({**BASE, **change}, "/etc/calico-py/node.yaml")
    assert caught.value.code == 7
    assert words in caught.value.msg and caught.value.msg.startswith("/etc/calico-py/node.yaml")


def test_claim_order_skips_taken_blocks_and_covers_the_pool() -> None:
    pool = ipaddress.IPv4Network("10.0.0.0/24")
    taken = {ipaddress.IPv4Network("10.0.0.64/26")}
    order = list(claim_order(pool, 26, taken, "n1"))
    assert sorted(order) == [ipaddress.IPv4Network(f"10.0.0.{i}/26") for i in (0, 128, 192)]
    assert list(claim_order(pool, 26, taken, "n1")) == order


def test_the_home_block_stays_first_when_a_claim_wraps_around_the_pool() -> None:
    low, high, mid = (ipaddress.IPv4Network(f"192.168.0.{i}/30") for i in (0, 252, 128))
    assert home_first([low, high], None, [high]) == [high, low]
    assert home_first([mid, low, high], None, [high, low]) == [high, low, mid]
    assert home_first([low, high], None, []) == [low, high]
    assert home_first([low, high], ipaddress.IPv4Address("192.168.0.1"), [high]) == [low, high]


def test_vtep_mac() -> None:
    mac = vtep_mac("n1")
    assert mac == vtep_mac("n1") != vtep_mac("n2") and mac.startswith("66:")
