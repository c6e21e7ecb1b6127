from ipaddress import ip_address as ip

import pytest

from cni_calico_py.core.errors import CNIError, Code
from ipam.requested import requested_addresses


def test_nothing_requested():
    assert requested_addresses({}, {"args": {"cni": {}}, "runtimeConfig": {}}) == []


def test_all_three_sources_with_and_without_prefix_deduplicated():
    found = requested_addresses(
        {"IP": "192.168.97.7, fd00:97::7"},
        {"args": {"cni": {"ips": ["192.168.97.8/26", "192.168.97.7"]}},
         "runtimeConfig": {"ips": ["192.168.97.9/26"]}},
    )
    assert [(str(r.address), r.source) for r in found] == [
        ("192.168.97.7", "CNI_ARGS IP"), ("fd00:97::7", "CNI_ARGS IP"),
        ("192.168.97.8", "args.cni.ips[0]"), ("192.168.97.9", "runtimeConfig.ips[0]")]
    assert str(found[0]) == "192.168.97.7 (from CNI_ARGS IP)"
    assert found[0].address == ip("192.168.97.7")


@pytest.mark.parametrize(("cni_args", "raw", "code", "where"), [
    ({"IP": "192.168.97.300"}, {}, Code.INVALID_ENVIRONMENT, "CNI_ARGS IP"),
    ({}, {"args": {"cni": {"ips": ["nope"]}}}, Code.INVALID_NETWORK_CONFIG, "args.cni.ips[0]"),
    ({}, {"args": {"cni": {"ips": "192.168.97.7"}}}, Code.INVALID_NETWORK_CONFIG, "args.cni.ips"),
    ({}, {"runtimeConfig": {"ips": ["192.168.97.7", 5]}}, Code.INVALID_NETWORK_CONFIG,
     "runtimeConfig.ips[1]"),
])
def test_malformed_addresses(cni_args, raw, code, where):
    with pytest.raises(CNIError) as caught:
        requested_addresses(cni_args, raw)
    assert caught.value.code == code
    assert caught.value.details == where
    assert caught.value.msg.startswith(where) or where in caught.value.msg
