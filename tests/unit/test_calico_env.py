"""Calico's environment variables over the node config.

Each alone, each against the file's value, each refused when bad.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_calico_py.cli import run_cli
from cni_calico_py.cluster.config import load_with_sources
from cni_calico_py.core.errors import CNIError

BASE = {"etcd_endpoints": ["http://10.0.0.1:2379"], "pool": "192.168.0.0/16", "nodename": "n1"}

# Variable, its value, the config key it sets, the value that key then holds,
# and a different value for that key in the file.
CASES: list[tuple[str, str, str, Any, Any]] = [
    ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16", "pool", "10.244.0.0/16", "192.168.0.0/16"),
    ("CALICO_IPV4POOL_BLOCK_SIZE", "28", "block_size", 28, 26),
    ("CALICO_IPV4POOL_IPIP", "Always", "encapsulation", "IPIP", "VXLAN"),
    ("CALICO_IPV4POOL_IPIP", "CrossSubnet", "encapsulation", "IPIPCrossSubnet", "Off"),
    ("CALICO_IPV4POOL_IPIP", "Never", "encapsulation", "Off", "IPIP"),
    ("CALICO_IPV4POOL_VXLAN", "Always", "encapsulation", "VXLAN", "Off"),
    ("CALICO_IPV4POOL_VXLAN", "crosssubnet", "encapsulation", "VXLANCrossSubnet", "IPIP"),
    ("CALICO_IPV4POOL_VXLAN", "Never", "encapsulation", "Off", "VXLANCrossSubnet"),
    ("IP", "10.0.0.5", "node_ip", "10.0.0.5", "10.0.0.9"),
    ("IP", "10.0.0.5/24", "node_ip", "10.0.0.5/24", "10.0.0.9"),
    ("IP", "autodetect", "node_ip", None, "10.0.0.9"),
    ("IP_AUTODETECTION_METHOD", "skip-interface=eth0", "ip_autodetection",
     "skip-interface=eth0", "first-found"),
    ("IP_AUTODETECTION_METHOD", "can-reach=10.0.0.1", "ip_autodetection", "can-reach=10.0.0.1",
     "interface=eth1"),
    ("IP_AUTODETECTION_METHOD", "cidr=10.0.0.0/8", "ip_autodetection", "cidr=10.0.0.0/8",
     "first-found"),
    ("AS", "64600", "as_number", 64600, 64512),
    ("NODENAME", "worker-7", "nodename", "worker-7", "n1"),
    ("ETCD_ENDPOINTS", "http://10.0.0.2:2379,http://10.0.0.3:2379", "etcd_endpoints",
     ["http://10.0.0.2:2379", "http://10.0.0.3:2379"], ["http://10.0.0.1:2379"]),
    ("CALICO_NETWORKING_BACKEND", "vxlan", "networking_backend", "vxlan", "none"),
    ("CALICO_NETWORKING_BACKEND", "bird", "networking_backend", "bird", "none"),
    ("CALICO_NETWORKING_BACKEND", "none", "networking_backend", "none", "bird"),
    # Accepted; it sets nothing (etcd is the only datastore), so no file value can conflict.
    ("DATASTORE_TYPE", "etcdv3", "block_size", 26, None),
]


def write(tmp_path: Path, without: str = "", **settings: Any) -> str:
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in {**BASE, **settings}.items() if k != without}))
    return str(path)


def value_of(conf: Any, key: str) -> Any:
    value = conf.model_dump(mode="json")[key]
    return value


@pytest.mark.parametrize(("variable", "value", "key", "expected", "in_file"), CASES)
def test_alone(tmp_path: Path, variable: str, value: str, key: str, expected: Any,
               in_file: Any) -> None:
    conf, sources = load_with_sources(write(tmp_path, without=key), {variable: value})
    assert value_of(conf, key) == expected
    if variable != "DATASTORE_TYPE":
        assert sources[key] == f"env {variable}"


@pytest.mark.parametrize(("variable", "value", "key", "expected", "in_file"),
                         [c for c in CASES if c[4] is not None])
def test_the_variable_wins_over_the_file_and_node_config_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str,
        expected: Any, in_file: Any) -> None:
    path = write(tmp_path, **{key: in_file})
    monkeypatch.setenv(variable, value)
    out = io.StringIO()
    assert run_cli(["node", "config", "--config", path, "--json"], "calico-py", out) == 0
    shown = json.loads(out.getvalue())[key]
    assert shown == {"value": expected, "source": f"env {variable} (over {path})"}
    text = io.StringIO()
    assert run_cli(["node", "config", "--config", path], "calico-py", text) == 0
    line = next(line for line in text.getvalue().splitlines() if line.startswith(f"{key} "))
    assert line.endswith(f"env {variable} (over {path})"), line


def test_without_variables_node_config_names_the_file_and_the_defaults(tmp_path: Path) -> None:
    _, sources = load_with_sources(write(tmp_path), {})
    assert sources["pool"] == str(tmp_path / "node.yaml")
    assert sources["block_size"] == "default"


def test_the_environment_alone_is_a_config(tmp_path: Path) -> None:
    conf, sources = load_with_sources(str(tmp_path / "absent.yaml"), {
        "ETCD_ENDPOINTS": "http://10.0.0.2:2379", "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
        "NODENAME": "n2", "CALICO_IPV4POOL_VXLAN": "Always"})
    assert (str(conf.pool), conf.nodename, conf.encapsulation) == ("10.244.0.0/16", "n2", "VXLAN")
    assert sources["encapsulation"] == "env CALICO_IPV4POOL_VXLAN"


@pytest.mark.parametrize(("environ", "message"), [
    ({"CALICO_IPV4POOL_CIDR": "10.244.0.0/33"}, "CALICO_IPV4POOL_CIDR='10.244.0.0/33': not an IPv4 CIDR"),
    ({"CALICO_IPV4POOL_CIDR": "10.244.0.1/16"}, "CALICO_IPV4POOL_CIDR"),
    ({"CALICO_IPV4POOL_BLOCK_SIZE": "19"}, "CALICO_IPV4POOL_BLOCK_SIZE='19': must be from 20 to 31"),
    ({"CALICO_IPV4POOL_BLOCK_SIZE": "x"}, "CALICO_IPV4POOL_BLOCK_SIZE='x': not a whole number"),
    ({"CALICO_IPV4POOL_IPIP": "Sometimes"}, "CALICO_IPV4POOL_IPIP='Sometimes': use Always"),
    ({"CALICO_IPV4POOL_VXLAN": "on"}, "CALICO_IPV4POOL_VXLAN='on'"),
    ({"CALICO_IPV4POOL_IPIP": "Always", "CALICO_IPV4POOL_VXLAN": "Always"},
     "CALICO_IPV4POOL_VXLAN='Always': a pool is encapsulated one way"),
    ({"IP": "10.0.0.300"}, "IP='10.0.0.300': not 'autodetect' or an IPv4 address"),
    ({"IP": "none"}, "IP='none'"),
    ({"IP_AUTODETECTION_METHOD": "best-guess"}, "IP_AUTODETECTION_METHOD='best-guess': use first-found"),
    ({"AS": "0"}, "AS='0': must be from 1 to 4294967295"),
    ({"AS": "65k"}, "AS='65k'"),
    ({"NODENAME": "Worker_7"}, "NODENAME='Worker_7': not a node name"),
    ({"ETCD_ENDPOINTS": "10.0.0.2:2379"}, "ETCD_ENDPOINTS='10.0.0.2:2379'"),
    ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "CALICO_NETWORKING_BACKEND='gobgp': use bird, vxlan or none"),
    ({"CALICO_NETWORKING_BACKEND": "vxlan", "CALICO_IPV4POOL_IPIP": "Always"},
     "CALICO_NETWORKING_BACKEND='vxlan': the vxlan backend needs a VXLAN pool"),
    ({"CALICO_NETWORKING_BACKEND": "bird", "CALICO_IPV4POOL_VXLAN": "Always"},
     "CALICO_NETWORKING_BACKEND='bird': BIRD does not route a VXLAN pool"),
    ({"DATASTORE_TYPE": "consul"}, "DATASTORE_TYPE='consul': it is etcdv3 or kubernetes"),
    # A good variable that the file then contradicts: named as the source.
    ({"CALICO_IPV4POOL_BLOCK_SIZE": "20", "CALICO_IPV4POOL_CIDR": "10.0.0.0/24"},
     "CALICO_IPV4POOL_BLOCK_SIZE sets block_size"),
])
def test_a_bad_value_is_refused_naming_the_variable(tmp_path: Path, environ: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(CNIError) as raised:
        load_with_sources(write(tmp_path), environ)
    assert raised.value.code == 7
    assert message in raised.value.msg, raised.value.msg


def test_node_run_stops_on_a_bad_variable_before_anything_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, state_file=str(tmp_path / "state.json"), bird_dir=str(tmp_path / "bird"))
    monkeypatch.setenv("CALICO_IPV4POOL_CIDR", "not-a-cidr")
    assert run_cli(["node", "run", "--config", path], "calico-py", io.StringIO()) == 1
    assert "CALICO_IPV4POOL_CIDR='not-a-cidr'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.yaml"]
