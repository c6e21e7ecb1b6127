"""The executable as a runtime sees it: env + stdin in, exit code + JSON out.

These requests fail before any change to a network namespace, so they run
the executable directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from cni_calico_py import __version__
from cni_calico_py.core.versions import SUPPORTED_VERSIONS

ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "proto1", "CNI_NETNS": "/var/run/netns/none",
           "CNI_IFNAME": "eth0"}


def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": version, "name": "protonet", "type": "calico-py",
        "ipam": {"type": "calico-py-ipam", "subnet": "10.251.0.0/26", "dataDir": "/nonexistent"},
    }
    base.update(extra)
    return base


def run(exe: str, env: dict[str, str], stdin: Any = None) -> tuple[int, Any, str]:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode() if stdin is not None else b""
    proc = subprocess.run([exe], env={"PATH": os.environ["PATH"], **env}, input=data,
                          capture_output=True, timeout=30)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "Traceback" not in out + err
    return proc.returncode, json.loads(out) if out.strip() else None, err


def assert_error(result: tuple[int, Any, str], code: int, *fragments: str) -> dict[str, Any]:
    rc, payload, _ = result
    assert rc == 1, payload
    assert set(payload) == {"cniVersion", "code", "msg", "details"}
    assert payload["code"] == code, payload
    for fragment in fragments:
        assert fragment in payload["msg"] + payload["details"], payload
    return dict(payload)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("exe_name", ["calico-py", "calico-py-ipam"])
def test_version(bin_dir, exe_name, version):
    rc, payload, _ = run(str(bin_dir / exe_name), {"CNI_COMMAND": "VERSION"}, {"cniVersion": version})
    assert rc == 0
    assert payload == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_version_without_stdin(plugin_exe):
    rc, payload, _ = run(plugin_exe, {"CNI_COMMAND": "VERSION"})
    assert rc == 0 and "1.1.0" in payload["supportedVersions"]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "abc"])
def test_unsupported_version(plugin_exe, version):
    payload = assert_error(run(plugin_exe, ADD_ENV, conf(version)), 1, version)
    assert payload["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_before_0_4_0(plugin_exe, version):
    assert_error(run(plugin_exe, {**ADD_ENV, "CNI_COMMAND": "CHECK"}, conf(version)), 1, "CHECK", "0.4.0")


@pytest.mark.parametrize("verb", ["GC", "STATUS"])
def test_gc_and_status_need_1_1_0(plugin_exe, verb):
    env = {"CNI_COMMAND": verb, "CNI_PATH": "/opt/cni/bin"}
    payload = assert_error(run(plugin_exe, env, conf("1.0.0")), 1, verb, "1.1.0")
    assert payload["cniVersion"] == "1.0.0"


@pytest.mark.parametrize(
    "env, fragments",
    [
        ({"CNI_COMMAND": "ADD"}, ["CNI_CONTAINERID", "required"]),
        ({**ADD_ENV, "CNI_NETNS": ""}, ["CNI_NETNS"]),
        ({k: v for k, v in ADD_ENV.items() if k != "CNI_IFNAME"}, ["CNI_IFNAME"]),
        ({**ADD_ENV, "CNI_CONTAINERID": "-bad"}, ["CNI_CONTAINERID", "letter or digit"]),
        ({**ADD_ENV, "CNI_IFNAME": "a-very-long-ifname"}, ["CNI_IFNAME", "at most 15"]),
        ({**ADD_ENV, "CNI_ARGS": "FOO=bar"}, ["CNI_ARGS", "FOO", "IgnoreUnknown"]),
        ({**ADD_ENV, "CNI_ARGS": "garbage"}, ["CNI_ARGS", "KEY=VALUE"]),
        ({"CNI_COMMAND": "GC"}, ["CNI_PATH"]),
        ({"CNI_COMMAND": "BOGUS"}, ["CNI_COMMAND"]),
    ],
)
def test_invalid_environment(plugin_exe, env, fragments):
    assert_error(run(plugin_exe, env, conf()), 4, *fragments)


def test_netns_that_does_not_exist(plugin_exe, tmp_path):
    cfg = conf(ipam={"type": "calico-py-ipam", "subnet": "10.251.0.0/26", "dataDir": str(tmp_path)})
    assert_error(run(plugin_exe, ADD_ENV, cfg), 4, "CNI_NETNS", "/var/run/netns/none")


@pytest.mark.parametrize("stdin", [b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_undecodable_stdin(plugin_exe, stdin):
    assert_error(run(plugin_exe, ADD_ENV, stdin), 6, "stdin")


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"name": None}, ["name"]),
        ({"type": ""}, ["type"]),
        ({"ipam": None}, ["ipam"]),
        ({"ipam": {}}, ["ipam.type"]),
        ({"mtu": "big"}, ["mtu"]),
        ({"mtu": 20}, ["mtu", "68"]),
        ({"log_level": "chatty"}, ["log_level"]),
        ({"veth_prefix": "toolong"}, ["veth_prefix"]),
        (
            {"container_settings": {"allow_ip_forwarding": "perhaps"}},
            ["container_settings.allow_ip_forwarding"],
        ),
        ({"cniVersion": None}, ["cniVersion"]),
    ],
)
def test_invalid_config(plugin_exe, change, fragments):
    cfg = conf()
    for key, value in change.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    payload = assert_error(run(plugin_exe, ADD_ENV, cfg), 7, *fragments)
    assert payload["msg"].startswith("invalid network config")


def test_unknown_ipam_type_with_nothing_in_cni_path(plugin_exe, tmp_path):
    cfg = conf(ipam={"type": "no-such-ipam"})
    env = {**ADD_ENV, "CNI_PATH": str(tmp_path)}
    assert_error(run(plugin_exe, env, cfg), 7, "ipam.type", "no-such-ipam", "CNI_PATH")


def test_stdout_only_carries_the_result_even_with_debug_logs(plugin_exe):
    rc, payload, stderr = run(plugin_exe, {**ADD_ENV, "CNI_ARGS": "FOO=1"}, conf(log_level="debug"))
    assert rc == 1 and payload["code"] == 4
    assert "FOO" in stderr  # the log line went to stderr


def test_logs_go_to_the_configured_file(plugin_exe, tmp_path):
    log_file = tmp_path / "cni.log"
    cfg = conf(log_level="info", log_file_path=str(log_file),
               ipam={"type": "no-such-ipam"})
    rc, payload, stderr = run(plugin_exe, {**ADD_ENV, "CNI_PATH": str(tmp_path)}, cfg)
    assert rc == 1 and payload["code"] == 7
    assert "no-such-ipam" in log_file.read_text()
    assert stderr == ""


@pytest.mark.parametrize("args, expect", [
    (["--help"], "usage:"), (["--version"], __version__), ([], "container runtime"),
])
def test_cli_without_cni_command(plugin_exe, args, expect):
    proc = subprocess.run([plugin_exe, *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0
    assert expect in proc.stdout
    assert "Traceback" not in proc.stderr
