import ipaddress
import os
import re
import shutil
import subprocess

import pytest

from cni_calico_py.cluster.bird import Bird, BirdError
from cni_calico_py.cluster.bird_config import peer_address, protocol_name, render
from cni_calico_py.datastore.model import NodeRecord

POOL = ipaddress.IPv4Network("192.168.0.0/16")
LOG = "/run/calico-py/bird/bird.log"
NODES = [NodeRecord(f"node{i}", f"10.99.0.1{i}/24", 64512, "66:00:00:00:00:0" + str(i)) for i in (1, 2, 3)]


def protocols(text: str) -> dict[str, str]:
    """BGP protocol name -> its body."""
    return dict(re.findall(r"^protocol bgp (\S+) \{\n(.*?)^\}", text, re.M | re.S))


BLOCKS = [ipaddress.IPv4Network("192.168.0.64/26"), ipaddress.IPv4Network("192.168.1.0/26")]


def test_single_node_has_no_peers_and_holds_its_blocks():
    text = render(NODES[0], [NODES[0]], POOL, 64512, LOG, BLOCKS)
    assert "router id 10.99.0.11;" in text
    assert f'log "{LOG}" all;' in text
    assert protocols(text) == {}
    assert "protocol device" in text
    kernel = text[text.index("protocol kernel"):text.index("protocol static")]
    for line in ("merge paths on;", "metric 0;", "import none;",
                 "export filter calico_py_kernel_export;"):
        assert line in kernel
    assert "learn" not in kernel
    static = text[text.index("protocol static calico_py_blocks"):]
    assert "route 192.168.0.64/26 blackhole;\n  route 192.168.1.0/26 blackhole;" in static


def test_filters():
    text = render(NODES[0], NODES, POOL, 64512, LOG)
    assert ("if source = RTS_STATIC && dest = RTD_BLACKHOLE && net ~ [ 192.168.0.0/16+ ] then accept;"
            in text)
    assert "if !(net ~ [ 192.168.0.0/16+ ]) then reject;" in text
    kernel_export = text[text.index("filter calico_py_kernel_export"):]
    assert "if source = RTS_BGP then accept;\n  if source = RTS_STATIC then accept;" in kernel_export
    assert "tunl0" not in text


def test_three_nodes_full_mesh_passive_towards_lower_addresses():
    middle = render(NODES[1], NODES, POOL, 64500, LOG)
    peers = protocols(middle)
    assert list(peers) == ["peer_10_99_0_11", "peer_10_99_0_13"]
    assert "passive on;" in peers["peer_10_99_0_11"]
    assert "passive on;" not in peers["peer_10_99_0_13"]
    for name, body in peers.items():
        address = peer_address(name)
        assert f"neighbor {address} as 64500;" in body
        assert "local 10.99.0.12 as 64500;" in body
        for line in ("direct;", "import filter calico_py_bgp_import;",
                     "export filter calico_py_bgp_export;", "connect delay time 1;",
                     "connect retry time 1;", "error wait time 1, 5;"):
            assert line in body
        # Reflectors pass routes on with the next hop they came with.
        assert "next hop self" not in body and "rr client" not in body
    # Exactly one side of each pair is passive.
    texts = {n.name: protocols(render(n, NODES, POOL, 64500, LOG)) for n in NODES}
    assert "passive on;" not in "".join(texts["node1"].values())
    assert all("passive on;" in body for body in texts["node3"].values())


def test_ipip_routes_go_through_tunl0_onlink():
    text = render(NODES[0], NODES, POOL, 64512, LOG, BLOCKS, "IPIP")
    body = text[text.index("filter calico_py_bgp_import"):text.index("filter calico_py_kernel_export")]
    assert 'ifname = "tunl0";\n  onlink = true;\n  gw = bgp_next_hop;\n  accept;' in body


def test_ipip_cross_subnet_tunnels_only_beyond_the_node_subnet():
    text = render(NODES[0], NODES, POOL, 64512, LOG, BLOCKS, "IPIPCrossSubnet")
    body = text[text.index("filter calico_py_bgp_import"):text.index("filter calico_py_kernel_export")]
    assert "if !(bgp_next_hop ~ 10.99.0.0/24) then {" in body
    assert 'ifname = "tunl0";' in body and "gw = bgp_next_hop;" in body


REFLECTED = [NodeRecord(f"n{i}", f"10.99.0.{10 + i}/24", 64512, "m", None,
                        "224.0.0.1" if i in (1, 2) else None) for i in range(1, 6)]


def test_route_reflectors_peer_with_everyone_clients_with_reflectors_only():
    reflect = "if source = RTS_BGP && net ~ [ 192.168.0.0/16+ ] then accept;"
    assert reflect in render(REFLECTED[0], REFLECTED, POOL, 64512, LOG)
    assert reflect not in render(REFLECTED[3], REFLECTED, POOL, 64512, LOG)
    client = protocols(render(REFLECTED[3], REFLECTED, POOL, 64512, LOG))
    assert list(client) == ["peer_10_99_0_11", "peer_10_99_0_12"]
    assert not any("rr client" in body for body in client.values())
    reflector = protocols(render(REFLECTED[0], REFLECTED, POOL, 64512, LOG))
    assert list(reflector) == [f"peer_10_99_0_{10 + i}" for i in range(2, 6)]
    assert "rr client" not in reflector["peer_10_99_0_12"]  # the other reflector
    for i in range(3, 6):
        assert "rr client;\n  rr cluster id 224.0.0.1;" in reflector[f"peer_10_99_0_{10 + i}"]


def test_self_skipped_and_output_stable():
    shuffled = [NODES[2], NODES[0], NODES[1], NODES[0]]
    one = render(NODES[0], NODES, POOL, 64512, LOG)
    assert render(NODES[0], shuffled, POOL, 64512, LOG) == one
    assert render(NODES[0], NODES[1:], POOL, 64512, LOG) == one
    assert "peer_10_99_0_11" not in one
    assert "router id 10.99.0.11;" in one


def test_peers_sorted_by_address_not_text():
    nodes = [NodeRecord("a", "10.0.0.1/24", 1, "m"), NodeRecord("b", "10.0.0.10/24", 1, "m"),
             NodeRecord("c", "10.0.0.9/24", 1, "m")]
    assert list(protocols(render(nodes[0], nodes, POOL, 1, LOG))) == ["peer_10_0_0_9", "peer_10_0_0_10"]


def test_protocol_names():
    address = ipaddress.IPv4Address("10.99.0.12")
    assert protocol_name(address) == "peer_10_99_0_12"
    assert peer_address("peer_10_99_0_12") == "10.99.0.12"
    assert peer_address("kernel1") is None
    assert peer_address("peer_x") is None


@pytest.mark.parametrize("bad", [dict(as_number=0), dict(as_number=2**32), dict(log_path='/tmp/a"b')])
def test_rejects_what_bird_cannot_take(bad):
    args = dict(me=NODES[0], nodes=NODES, pool=POOL, as_number=64512, log_path=LOG) | bad
    with pytest.raises(ValueError):
        render(**args)


FAR = NodeRecord("far", "10.99.1.13/24", 64512, "m")


def test_a_peer_in_another_subnet_is_multihop():
    peers = protocols(render(NODES[0], [*NODES, FAR], POOL, 64512, LOG, BLOCKS, "IPIP"))
    assert "multihop;" in peers["peer_10_99_1_13"]
    assert "direct;" in peers["peer_10_99_0_12"] and "multihop" not in peers["peer_10_99_0_12"]


@pytest.mark.parametrize("mode", ["Off", "IPIP", "IPIPCrossSubnet"])
@pytest.mark.parametrize(("me", "nodes"), [(NODES[0], NODES[:1]), (NODES[1], [*NODES, FAR]),
                                          (REFLECTED[0], REFLECTED), (REFLECTED[4], REFLECTED)])
def test_bird_parses_the_config(tmp_path, me, nodes, mode):
    """BIRD itself checks the config of each mode (IPIP's too: no ipip module here to run it)."""
    if shutil.which("bird") is None:
        pytest.skip("bird (Debian bird2) is not installed")
    conf = tmp_path / "bird.conf"
    conf.write_text(render(me, nodes, POOL, 64512, str(tmp_path / "bird.log"), BLOCKS, mode))
    proc = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_bad_config_is_neither_written_nor_started(tmp_path):
    if shutil.which("bird") is None:
        pytest.skip("bird (Debian bird2) is not installed")
    bird = Bird(str(tmp_path))
    with pytest.raises(BirdError, match="syntax error"):
        bird.apply("protocol device { nonsense; }\n")
    assert not (tmp_path / "bird.conf").exists()
    assert list(tmp_path.iterdir()) == []
    assert not bird.running()
    assert bird.peer_states() == {}


def test_stale_pid_file_is_not_running(tmp_path):
    (tmp_path / "bird.pid").write_text(f"{os.getpid()}\n")
    bird = Bird(str(tmp_path))
    assert not bird.running()
    bird.stop()
