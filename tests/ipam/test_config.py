import ipaddress

import pytest

from cni_calico_py.core.decoding import field_path
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.datastore.settings import DatastoreSettings
from ipam import config, node_state

V4 = "192.168.97.0/26"
V6 = "fd00:97::/122"


def parse(ipam, name="net1"):
    return config.parse({"cniVersion": "1.1.0", "name": name, "ipam": ipam})


def test_subnet_shorthand_with_defaults():
    conf = parse({"type": "calico-py-ipam", "subnet": V4})
    assert conf.network == "net1"
    assert conf.data_dir == "/var/lib/cni/networks"
    assert conf.store_dir == "/var/lib/cni/networks/net1"
    assert conf.lock_timeout == 10
    assert conf.routes == ()
    (only,) = conf.range_sets
    (whole,) = only.ranges
    assert (str(whole.first), str(whole.last)) == ("192.168.97.0", "192.168.97.63")
    assert only.size == 64
    assert conf.blocks == (ipaddress.ip_network(V4),)


def test_dual_stack_range_sets_routes_and_settings():
    conf = parse({
        "type": "calico-py-ipam",
        "ranges": [[{"subnet": V4, "rangeStart": "192.168.97.10", "rangeEnd": "192.168.97.20"}],
                   [{"subnet": V6}]],
        "dataDir": "/tmp/x", "lockTimeoutSeconds": 2.5,
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "192.168.97.1"}],
        "someOtherPluginsKey": True,
    })
    assert [s.size for s in conf.range_sets] == [11, 64]
    assert conf.range_sets[0].describe() == "192.168.97.0/26 (192.168.97.10-192.168.97.20)"
    assert conf.range_sets[1].describe() == V6
    assert conf.lock_timeout == 2.5 and conf.data_dir == "/tmp/x"
    assert [str(r.dst) for r in conf.routes] == ["0.0.0.0/0", "10.0.0.0/8"]
    assert str(conf.routes[1].gw) == "192.168.97.1"
    assert conf.range_set_of(ipaddress.ip_address("fd00:97::5")).index == 1
    assert conf.range_set_of(ipaddress.ip_address("192.168.97.5")) is None


def test_top_level_subnet_comes_first_then_ranges():
    conf = parse({"type": "calico-py-ipam", "subnet": V4, "ranges": [[{"subnet": V6}]]})
    assert [s.describe() for s in conf.range_sets] == [V4, V6]


def test_gateway_inside_the_range_is_not_counted():
    conf = parse({"type": "calico-py-ipam", "subnet": V4, "gateway": "192.168.97.1"})
    assert conf.range_sets[0].size == 63
    outside = parse({"type": "calico-py-ipam", "subnet": V4, "gateway": "169.254.1.1"})
    assert outside.range_sets[0].size == 64


def range_(**fields):
    return {"subnet": V4, **fields}


BAD = [
    ("host bits", {"subnet": "192.168.97.5/26"}, "ipam.subnet", "did you mean 192.168.97.0/26"),
    ("no prefix", {"subnet": "192.168.97.0"}, "ipam.subnet", "no prefix length"),
    ("not a subnet", {"subnet": "bogus"}, "ipam.subnet", "not a subnet"),
    ("range host bits", {"ranges": [[{"subnet": "fd00:97::1/122"}]]},
     "ipam.ranges[0][0].subnet", "host bits"),
    ("start outside", {"ranges": [[range_(rangeStart="192.168.97.2", rangeEnd="192.168.97.3"),
                                   range_(rangeStart="192.168.98.4")]]},
     "ipam.ranges[0][1].rangeStart", "outside the range's subnet"),
    ("end outside", {"ranges": [[range_(rangeEnd="192.168.97.64")]]},
     "ipam.ranges[0][0].rangeEnd", "outside"),
    ("start after end", {"ranges": [[range_(rangeStart="192.168.97.9", rangeEnd="192.168.97.8")]]},
     "ipam.ranges[0][0].rangeStart", "after rangeEnd"),
    ("start not an address", {"subnet": V4, "rangeStart": "x"}, "ipam.rangeStart",
     "not an IP address"),
    ("overlap across sets", {"ranges": [[range_()], [range_(rangeStart="192.168.97.60")]]},
     "ipam.ranges[1][0]", "overlaps ipam.ranges[0][0]"),
    ("overlap within a set", {"ranges": [[range_(rangeEnd="192.168.97.10"),
                                          range_(rangeStart="192.168.97.10")]]},
     "ipam.ranges[0][1]", "overlaps ipam.ranges[0][0]"),
    ("overlap with shorthand", {"subnet": V4, "ranges": [[range_()]]},
     "ipam.ranges[0][0]", "overlaps ipam.subnet"),
    ("mixed families", {"ranges": [[range_(), {"subnet": V6}]]}, "ipam.ranges[0]", "mixes"),
    ("empty range set", {"ranges": [[]]}, "ipam.ranges[0]", "empty"),
    ("start without subnet", {"rangeStart": "192.168.97.1"}, "ipam.subnet", "required"),
    ("misspelt key", {"ranges": [[range_(rangestart="192.168.97.1")]]},
     "ipam.ranges[0][0].rangestart", "Extra inputs"),
    ("subnet not a string", {"ranges": [[{"subnet": 26}]]}, "ipam.ranges[0][0].subnet",
     "valid string"),
    ("subnet missing", {"ranges": [[{"rangeStart": "192.168.97.1"}]]},
     "ipam.ranges[0][0].subnet", "required"),
    ("gateway of the other family", {"subnet": V4, "gateway": "fd00::1"}, "ipam.gateway",
     "IPv6"),
    ("zero lock timeout", {"subnet": V4, "lockTimeoutSeconds": 0}, "ipam.lockTimeoutSeconds",
     "greater than 0"),
    ("lock timeout not a number", {"subnet": V4, "lockTimeoutSeconds": "soon"},
     "ipam.lockTimeoutSeconds", "number"),
    ("empty dataDir", {"subnet": V4, "dataDir": ""}, "ipam.dataDir", "at least 1"),
    ("route with host bits", {"subnet": V4, "routes": [{"dst": "10.0.0.1/8"}]},
     "ipam.routes[0].dst", "host bits"),
    ("route gw of the other family", {"subnet": V4, "routes": [{"dst": "0.0.0.0/0",
                                                                "gw": "fd00::1"}]},
     "ipam.routes[0].gw", "IPv6"),
    ("route without dst", {"subnet": V4, "routes": [{"gw": "192.168.97.1"}]},
     "ipam.routes[0].dst", "required"),
    ("ranges not a list", {"ranges": {"subnet": V4}}, "ipam.ranges", "valid list"),
]


@pytest.mark.parametrize(("section", "path", "words"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_config_is_error_7_naming_the_field(section, path, words):
    with pytest.raises(CNIError) as caught:
        parse({"type": "calico-py-ipam", **section})
    err = caught.value
    assert err.code == Code.INVALID_NETWORK_CONFIG
    assert f"{path}: " in err.msg, err.msg
    assert words in err.msg
    assert path in err.details.split(", ")


def test_every_problem_is_named_in_one_error():
    with pytest.raises(CNIError) as caught:
        parse({"type": "calico-py-ipam", "ranges": [[{"subnet": "10.0.0.1/24"}],
                                                    [range_(rangeEnd="10.0.0.1")]]})
    assert caught.value.details == "ipam.ranges[0][0].subnet, ipam.ranges[1][0].rangeEnd"


@pytest.mark.parametrize(("raw", "path"), [
    ({"cniVersion": "1.1.0", "name": "../etc", "ipam": {"type": "x", "subnet": V4}}, "name"),
    ({"cniVersion": "1.1.0", "ipam": {"type": "x", "subnet": V4}}, "name"),
    ({"cniVersion": "1.1.0", "name": "n"}, "ipam"),
    ({"cniVersion": "1.1.0", "name": "n", "ipam": {"subnet": V4}}, "ipam.type"),
])
def test_bad_network_level_fields(raw, path):
    with pytest.raises(CNIError) as caught:
        config.parse(raw)
    assert caught.value.code == Code.INVALID_NETWORK_CONFIG
    assert path in caught.value.details.split(", ")


def test_field_path_formatting():
    assert field_path("ipam", ("ranges", 0, 1, "rangeStart")) == \
        "ipam.ranges[0][1].rangeStart"
    assert field_path("", ("routes", 2)) == "routes[2]"


def test_cluster_mode_before_the_node_daemon_wrote_its_state_is_try_again(tmp_path):
    state = tmp_path / "node-state.json"
    with pytest.raises(CNIError) as caught:
        parse({"type": "calico-py-ipam", "nodeStateFile": str(state)})
    assert caught.value.code == Code.TRY_AGAIN_LATER
    assert str(state) in caught.value.msg and "calico-py node run" in caught.value.msg


def test_cluster_mode_takes_the_node_blocks_and_keeps_the_tunnel_address_out(tmp_path):
    path = str(tmp_path / "node-state.json")
    node_state.write(path, node_state.NodeState(
        nodename="n1", node_ip="10.99.0.11/24", pool="192.168.0.0/16", block_size=26,
        encapsulation="VXLAN",
        datastore=DatastoreSettings("etcdv3", ("http://10.99.0.1:2379",), "/p", 1.0),
        blocks=("192.168.5.0/26", "192.168.9.64/26"),
        tunnel_address="192.168.5.0"))
    conf = parse({"type": "calico-py-ipam", "nodeStateFile": path})
    assert conf.node_state_file == path
    (only,) = conf.range_sets
    assert [(str(r.first), str(r.last)) for r in only.ranges] == [
        ("192.168.5.1", "192.168.5.63"), ("192.168.9.64", "192.168.9.127")]
    assert only.size == 127
