"""Which IPAM plugin `ipam.type` names: never the plugin itself, which would run itself without end."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from cni_calico_py import ipam_client, main
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import Request


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed layout: bin/calico-py and bin/calico-py-ipam link to calico-py.d/launcher."""
    home = tmp_path / "bin" / "calico-py.d"
    _executable(home / "calico-py")
    _executable(home / "launcher")
    for name in ("calico-py", "calico-py-ipam"):
        (tmp_path / "bin" / name).symlink_to("calico-py.d/launcher")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(home / "calico-py"))
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "bin" / "calico-py")])
    return tmp_path / "bin"


def _refused_as_itself(err: pytest.ExceptionInfo[CNIError], ipam_type: str) -> None:
    assert err.value.code == Code.INVALID_NETWORK_CONFIG
    assert err.value.details == "ipam.type"
    assert f"ipam.type {ipam_type!r} names this plugin itself" in err.value.msg
    assert "use 'calico-py-ipam' for the built-in IPAM" in err.value.msg


def test_the_plugins_own_type_is_refused_before_any_lookup() -> None:
    request = Request(command="ADD", path=("/nonexistent",))
    with pytest.raises(CNIError) as err:
        ipam_client.preflight(request, {"ipam": {"type": "calico-py"}}, "calico-py")
    _refused_as_itself(err, "calico-py")
    assert "(" not in err.value.msg  # no path: the name alone says it


@pytest.mark.parametrize("target", ["calico-py", "calico-py.d/launcher", "calico-py.d/calico-py",
                                    "calico-py-ipam"])
def test_another_name_for_the_plugins_program_is_refused(frozen: Path, tmp_path: Path,
                                                          target: str) -> None:
    """A link to the program, the launcher or a link to either: run as `my-ipam`, it is the plugin."""
    links = tmp_path / "links"
    links.mkdir()
    (links / "my-ipam").symlink_to(frozen / target)
    with pytest.raises(CNIError) as err:
        ipam_client.find_plugin("my-ipam", (str(links), str(frozen)))
    _refused_as_itself(err, "my-ipam")
    assert f"({links / 'my-ipam'} is this plugin's own program)" in err.value.msg


def test_a_hard_link_to_the_running_entry_point_is_refused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Not frozen (pip's entry points): the running script itself, under any name."""
    script = _executable(tmp_path / "venv" / "calico-py")
    monkeypatch.setattr(sys, "argv", [str(script)])
    os.link(script, tmp_path / "venv" / "other-ipam")
    with pytest.raises(CNIError) as err:
        ipam_client.find_plugin("other-ipam", (str(tmp_path / "venv"),))
    _refused_as_itself(err, "other-ipam")


def test_our_ipam_and_other_plugins_are_found(frozen: Path, tmp_path: Path) -> None:
    """calico-py-ipam is this program too, but as the IPAM: found, never refused."""
    other = _executable(tmp_path / "plugins" / "host-local")
    search = (str(frozen), str(other.parent))
    assert ipam_client.find_plugin("calico-py-ipam", search) == str(frozen / "calico-py-ipam")
    assert ipam_client.find_plugin("host-local", search) == str(other)


def test_a_request_naming_the_plugin_as_its_ipam_fails_at_once_with_7(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the whole handler: error 7 in the request's version, before any change to the node."""
    monkeypatch.setenv("CALICO_PY_VERDICTS", "off")
    conf = {"cniVersion": "0.4.0", "name": "net", "type": "calico-py",
            "mtu_file_path": str(tmp_path / "no-mtu-file"),
            "ipam": {"type": "calico-py", "subnet": "10.0.0.0/26", "dataDir": str(tmp_path / "store")}}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/nonexistent",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(tmp_path)}
    started = time.monotonic()
    code, payload = main.serve(env, json.dumps(conf).encode(), "calico-py")
    assert time.monotonic() - started < 5
    assert code == 1 and payload is not None
    assert (payload["cniVersion"], payload["code"], payload["details"]) == ("0.4.0", 7, "ipam.type")
    assert "names this plugin itself" in payload["msg"]
    assert not (tmp_path / "store").exists()
