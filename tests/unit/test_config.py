"""The network config: one definition, checked by pydantic once, read back without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from cni_calico_py import config

BASE = {
    "cniVersion": "1.0.0", "name": "net", "type": "calico-py",
    "ipam": {"type": "calico-py-ipam", "subnet": "10.0.0.0/24"},
}


@pytest.fixture
def directory(tmp_path, monkeypatch):
    path = tmp_path / "verdicts"
    monkeypatch.setenv("CALICO_PY_VERDICTS", str(path))
    return path


@pytest.mark.parametrize("section", [config.NetConf, config.ContainerSettings,
                                     config.IpamSection, config.Dns])
def test_the_models_are_built_from_the_dataclasses(section):
    model = config._model(section)
    assert list(model.model_fields) == [f.name for f in fields(section)]
    assert {n: f.alias for n, f in model.model_fields.items() if f.alias} == {
        f.name: f.metadata["alias"] for f in fields(section) if "alias" in f.metadata}


def test_gc_attachment_lists_share_one_verdict(directory):
    for n in range(3):
        kept = [{"containerID": f"c{n}", "ifname": "eth0"}]
        config.parse_netconf({**BASE, "cni.dev/valid-attachments": kept, "args": {"n": n}})
    assert len(list(directory.iterdir())) == 1


def test_what_is_remembered_is_what_the_validator_reads():
    raw = {**BASE, "bogus": 1, "prevResult": {"ips": []}, "runtimeConfig": {},
           "container_settings": {"allow_ip_forwarding": True, "other": 2}}
    assert config._read(config.NetConf, raw) == {
        "cniVersion": "1.0.0", "name": "net", "type": "calico-py",
        "ipam": {"type": "calico-py-ipam"},
        "container_settings": {"allow_ip_forwarding": True},
    }
    # A per-request value of the wrong type stays, for the validator to name.
    assert config._read(config.NetConf, {**BASE, "args": 5})["args"] == 5


def test_a_remembered_config_reads_the_same_and_never_imports_pydantic(directory):
    raw = {**BASE, "mtu": 1450, "log_level": "INFO", "dns": {"nameservers": ["10.96.0.10"]},
           "container_settings": {"allow_ip_forwarding": True}, "runtimeConfig": {"a": 1}}
    probe = (
        "import json, sys, dataclasses\n"
        "from cni_calico_py import config\n"
        "conf = config.parse_netconf(json.loads(sys.argv[1]))\n"
        "print(json.dumps([dataclasses.asdict(conf), 'pydantic' in sys.modules]))\n"
    )
    env = {**os.environ, "CALICO_PY_VERDICTS": str(directory)}
    first, second = (
        json.loads(subprocess.run([sys.executable, "-c", probe, json.dumps(raw)], env=env,
                                  check=True, capture_output=True, text=True).stdout)
        for _ in range(2)
    )
    assert first == [second[0], True]
    assert second[1] is False
    assert second[0]["log_level"] == "info" and second[0]["mtu"] == 1450
    assert second[0]["mtu_file_path"] == config.DEFAULT_MTU_FILE
    assert second[0]["dns"] == {"nameservers": ["10.96.0.10"]}
    assert second[0]["runtime_config"] == {"a": 1}
