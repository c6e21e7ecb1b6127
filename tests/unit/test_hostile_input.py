"""Hostile input is refused with a CNI error naming what is wrong, never a traceback.

Each test here failed before its fix; the end-to-end ones, with network
namespaces, are in tests/integration/test_hostile.py.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from cni_calico_py import config, main
from cni_calico_py.core import results
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import from_environ
from cni_calico_py.dataplane import netns, sysctl
from ipam.validation import parse_static

ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "hostile", "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0"}
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
        "ips": [{"address": "10.0.0.5/32", "interface": 0}], "routes": [{"dst": "0.0.0.0/0"}]}


@pytest.fixture(autouse=True)
def verdicts_apart(tmp_path, monkeypatch):
    """Validated configs are remembered under tmp_path, never in the machine's /run."""
    monkeypatch.setenv("CALICO_PY_VERDICTS", str(tmp_path / "verdicts"))


def netconf(**extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": "hostile", "type": "calico-py",
        "ipam": {"type": "calico-py-ipam", "subnet": "10.0.0.0/26", "dataDir": "/nonexistent"},
    }
    conf.update(extra)
    return conf


def refusal(err: pytest.ExceptionInfo[CNIError], code: int, *fragments: str) -> str:
    text = f"{err.value.msg} ({err.value.details})"
    assert err.value.code == code, text
    for fragment in fragments:
        assert fragment in text, text
    return text


# Defects 3 and 4: CNI_NETNS must be a network namespace, and not the node's own.


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("kind, fragment", [
    ("own", "node's own network namespace"),
    ("own-by-pid", "node's own network namespace"),
    ("regular file", "not a namespace"),
    ("directory", "is a directory"),
    ("/dev/null", "is a character device"),
    ("fifo", "is a FIFO"),
    ("mount namespace", "is a mount namespace"),
    ("relative", "not an absolute path"),
])
def test_what_is_not_a_pod_netns_is_refused(kind, fragment, tmp_path, fifo):
    regular = tmp_path / "file"
    regular.write_text("")
    path = {
        "own": "/proc/self/ns/net",
        "own-by-pid": f"/proc/{os.getpid()}/ns/net",
        "regular file": str(regular),
        "directory": str(tmp_path),
        "/dev/null": "/dev/null",
        "fifo": fifo,  # opening it for reading would block: it is never opened
        "mount namespace": "/proc/self/ns/mnt",
        "relative": "var/run/netns/x",
    }[kind]
    with pytest.raises(netns.NetnsRefused) as err:
        netns.require(path)
    refusal(err, Code.INVALID_ENVIRONMENT, "CNI_NETNS", path, fragment)
    with pytest.raises(netns.NetnsRefused), netns.entered(path):
        pytest.fail("entered a namespace that must be refused")


def test_a_missing_netns_is_not_found_rather_than_refused(tmp_path):
    for path in (str(tmp_path / "gone"), str(tmp_path / "gone" / "deeper")):
        with pytest.raises(netns.NetnsNotFound):
            netns.require(path)


# Defect 5: prevResult and dns are checked before anything changes.


@pytest.mark.parametrize("prev, field", [
    ({**PREV, "ips": [{"address": 5}]}, "prevResult.ips[0].address"),
    ({**PREV, "ips": [{"address": "not-an-address"}]}, "prevResult.ips[0].address"),
    ({**PREV, "interfaces": "eth0"}, "prevResult.interfaces"),
    ({**PREV, "interfaces": [{"name": "eth0", "mtu": float("inf")}]}, "prevResult.interfaces[0].mtu"),
    ({**PREV, "routes": [{"dst": "0.0.0.0/0", "priority": True}]}, "prevResult.routes[0].priority"),
    ({**PREV, "dns": {"nameservers": "8.8.8.8"}}, "prevResult.dns.nameservers"),
    ({**PREV, "dns": {"search": [1]}}, "prevResult.dns.search[0]"),
    ({**PREV, "cniVersion": 1}, "prevResult.cniVersion"),
])
def test_a_malformed_prev_result_is_refused_when_the_config_is_read(prev, field):
    # The config without prevResult is valid, and its verdict remembered first.
    config.parse_netconf(netconf())
    with pytest.raises(CNIError) as err:
        config.parse_netconf(netconf(prevResult=prev))
    refusal(err, Code.DECODING_FAILURE, field)


@pytest.mark.parametrize("dns, field", [
    ({"nameservers": 5}, "dns.nameservers"),
    ({"nameservers": "8.8.8.8"}, "dns.nameservers"),
    ({"nameservers": ["8.8.8.8", 5]}, "dns.nameservers[1]"),
    ({"nameservers": ["resolver.example"]}, "dns.nameservers"),
    ({"domain": ["a"]}, "dns.domain"),
    ({"search": "example.com"}, "dns.search"),
    ({"nameserver": ["8.8.8.8"]}, "dns.nameserver"),
    ("8.8.8.8", "dns"),
])
def test_bad_dns_is_refused(dns, field):
    with pytest.raises(CNIError) as err:
        config.parse_netconf(netconf(dns=dns))
    refusal(err, Code.INVALID_NETWORK_CONFIG, field)


def test_good_dns_keeps_only_what_was_given():
    parsed = config.parse_netconf(netconf(dns={"nameservers": ["10.96.0.10"], "search": ["a.b"]}))
    assert parsed.dns == {"nameservers": ["10.96.0.10"], "search": ["a.b"]}
    assert config.parse_netconf(netconf(dns={})).dns == {}


def test_wrong_json_types_are_not_converted():
    for change, field in (({"mtu": "1500"}, "mtu"), ({"mtu": True}, "mtu"),
                          ({"container_settings": {"allow_ip_forwarding": 1}},
                           "container_settings.allow_ip_forwarding"),
                          ({"veth_prefix": "c%d"}, "veth_prefix"),
                          ({"log_file_path": "/tmp/a\0b"}, "log_file_path")):
        with pytest.raises(CNIError) as err:
            config.parse_netconf(netconf(**change))
        refusal(err, Code.INVALID_NETWORK_CONFIG, field)


def test_prev_result_numbers_out_of_range():
    with pytest.raises(CNIError) as err:
        results.from_json({**PREV, "routes": [{"dst": "0.0.0.0/0", "table": -1}]})
    refusal(err, Code.DECODING_FAILURE, "prevResult.routes[0].table")


# Defect 6: JSON nested too deep.


@pytest.mark.parametrize("stdin", [
    b"[" * 100_000,
    b'{"cniVersion": "1.0.0", "name": ' + b"[" * 100_000,
    json.dumps(netconf(args={"deep": json.loads("[" * 200 + "]" * 200)})).encode(),
])
def test_deep_nesting_is_a_decoding_error(stdin):
    code, payload = main.serve(ADD_ENV, stdin, "calico-py")
    assert code == 1 and payload is not None
    assert payload["code"] == Code.DECODING_FAILURE and "stdin" in payload["details"], payload


def test_the_version_of_an_error_survives_deep_nesting():
    assert main._requested_version(b"[" * 100_000) == "1.1.0"
    assert main._requested_version(b'{"cniVersion": "0.4.0"}') == "0.4.0"
    assert main._requested_version(b'{"cniVersion": ["0.4.0"]}') == "1.1.0"


# Defect 12: the smaller ones.


@pytest.mark.parametrize("ifname, fragment", [
    ("a" * 14 + "é", "16 bytes"),  # 15 characters, 16 bytes
    ("ü" * 8, "16 bytes"),
    ("%d", "template"),
    ("eth%d", "template"),
    ("eth\x01", "control characters"),
    ("eth\u00a0", "spaces"),
    ("eth\udcff", "UTF-8"),
])
def test_bad_ifname(ifname, fragment):
    with pytest.raises(CNIError) as err:
        from_environ({**ADD_ENV, "CNI_IFNAME": ifname}, b"")
    refusal(err, Code.INVALID_ENVIRONMENT, "CNI_IFNAME", fragment)


def test_fifteen_bytes_of_utf8_are_fine():
    assert from_environ({**ADD_ENV, "CNI_IFNAME": "a" * 13 + "é"}, b"").ifname == "a" * 13 + "é"


def test_container_id_with_a_trailing_newline():
    with pytest.raises(CNIError) as err:
        from_environ({**ADD_ENV, "CNI_CONTAINERID": "abc\n"}, b"")
    refusal(err, Code.INVALID_ENVIRONMENT, "CNI_CONTAINERID")


def test_empty_cni_command_is_a_cni_error_not_the_help():
    out = io.StringIO()
    code = main.main({"CNI_COMMAND": ""}, io.BytesIO(b"{}"), out, ["calico-py"])
    payload = json.loads(out.getvalue())
    assert code == 1 and payload["code"] == Code.INVALID_ENVIRONMENT and "CNI_COMMAND" in payload["msg"]


@pytest.mark.parametrize("ipam, field", [
    ({"subnet": ""}, "ipam.subnet"),
    ({"ranges": [[{"subnet": ""}]]}, "ipam.ranges[0][0].subnet"),
    ({"rangeStart": ""}, "ipam.subnet"),
    ({"subnet": "10.0.0.0/26", "lockTimeoutSeconds": 121}, "ipam.lockTimeoutSeconds"),
    ({"subnet": "10.0.0.0/26", "dataDir": "relative/dir"}, "ipam.dataDir"),
    ({"subnet": "10.0.0.0/26", "dataDir": "/tmp/a\0b"}, "ipam.dataDir"),
    ({"subnet": 5}, "ipam.subnet"),
])
def test_bad_ipam_section(ipam, field):
    with pytest.raises(CNIError) as err:
        parse_static({"name": "net", "ipam": {"type": "calico-py-ipam", **ipam}})
    refusal(err, Code.INVALID_NETWORK_CONFIG, field)


def test_lock_timeout_up_to_120_seconds():
    conf = parse_static({"name": "net", "ipam": {"type": "calico-py-ipam", "subnet": "10.0.0.0/26",
                                                 "lockTimeoutSeconds": 120}})
    assert conf.lock_timeout == 120


def test_network_name_with_a_trailing_newline():
    with pytest.raises(CNIError) as err:
        parse_static({"name": "net\n", "ipam": {"type": "calico-py-ipam", "subnet": "10.0.0.0/26"}})
    refusal(err, Code.INVALID_NETWORK_CONFIG, "name")


@pytest.mark.parametrize("make, reason", [
    (lambda root: None, "No such file or directory"),
    (lambda root: os.makedirs(root / "net" / "ipv4" / "ip_forward"), "Is a directory"),
])
def test_a_failing_sysctl_write_names_the_sysctl(tmp_path, monkeypatch, make, reason):
    monkeypatch.setattr(sysctl, "PROC_SYS", str(tmp_path))
    make(tmp_path)
    with pytest.raises(CNIError) as err:
        sysctl.write(0, "ipv4", "ip_forward")
    refusal(err, Code.IO_FAILURE, str(tmp_path / "net" / "ipv4" / "ip_forward"), reason)
