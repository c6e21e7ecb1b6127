"""`calico-py install-cni` into temporary node directories: the layout, upgrades, refusals."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml

from cni_calico_py.cli import run_cli
from cni_calico_py.datastore import kubeconfig as kubeconfig_loader
from cni_calico_py.install import build, command
from cni_calico_py.install.exchange import exchange

REPO = Path(__file__).resolve().parents[2]
CONFLIST = (REPO / "conf" / "11-calico-py-cluster.conflist.example").read_text()
IN_POD = {"CNI_NETWORK_CONFIG": CONFLIST, "KUBERNETES_SERVICE_HOST": "10.96.0.1",
          "KUBERNETES_SERVICE_PORT": "443"}


def fake_build(path: Path, version: str) -> Path:
    """What `make build` makes, in miniature: the program, its launcher, _internal/."""
    (path / "_internal" / "lib").mkdir(parents=True)
    for name in ("calico-py", "launcher"):
        (path / name).write_text(f"#!/bin/sh\necho {name} {version}\n")
        (path / name).chmod(0o755)
    (path / "_internal" / "base_library.zip").write_text(f"modules {version}\n")
    (path / "_internal" / "lib" / "libpython3.11.so.1.0").write_text(f"libpython {version}\n")
    (path / "_internal" / "libpython3.11.so").symlink_to("lib/libpython3.11.so.1.0")
    return path


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in ("bin", "net", "sa")}
    for path in dirs.values():
        path.mkdir()
    (dirs["sa"] / "token").write_text("the-token\n")
    shutil.copy(certifi.where(), dirs["sa"] / "ca.crt")
    dirs["v1"] = fake_build(tmp_path / "v1", "0.1")
    dirs["v2"] = fake_build(tmp_path / "v2", "0.2")
    return dirs


def install(node: dict[str, Path], source: str = "v1", environ: dict[str, str] | None = None,
            ) -> tuple[int, str]:
    log = io.StringIO()
    options = command.Options(source=str(node[source]), bin_dir=str(node["bin"]),
                              conf_dir=str(node["net"]), service_account=str(node["sa"]))
    code = command.run(options, IN_POD if environ is None else environ, log)
    return code, log.getvalue()


def snapshot(root: Path) -> dict[str, Any]:
    """Every entry under root: a link's target, a directory's mode, a file's mode and bytes."""
    found: dict[str, Any] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            where = str(path.relative_to(root))
            if path.is_symlink():
                found[where] = ("link", os.readlink(path))
            elif path.is_dir():
                found[where] = ("dir", path.stat().st_mode & 0o7777)
            else:
                found[where] = ("file", path.stat().st_mode & 0o7777, path.read_bytes())
    return found


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_bin_dir_is_laid_out_as_make_install_lays_it_out(node, tmp_path):
    dist = tmp_path / "dist"
    fake_build(dist / "calico-py.d", "0.1")
    # Newer than every source (and the launcher than the program): make rebuilds nothing.
    later = time.time() + 3600
    os.utime(dist / "calico-py.d" / "calico-py", (later, later))
    os.utime(dist / "calico-py.d" / "launcher", (later + 60, later + 60))
    stage = tmp_path / "stage"
    subprocess.run(["make", "-s", "-C", str(REPO), "install", f"DIST={dist}", f"DESTDIR={stage}",
                    f"BUILD={tmp_path / 'scratch'}"], check=True, capture_output=True)
    code, log = install(node)
    assert code == 0, log
    ours, theirs = snapshot(node["bin"]), snapshot(stage / "opt" / "cni" / "bin")
    assert ours.keys() == theirs.keys()
    for where, (kind, *rest) in theirs.items():
        # make installs the launcher with the mtime it set; modes and bytes are what matter.
        assert ours[where][0] == kind and ours[where][1:] == tuple(rest), where
    assert ours["calico-py"] == ours["calico-py-ipam"] == ("link", "calico-py.d/launcher")


def test_a_second_run_replaces_the_build_and_a_third_changes_nothing(node):
    assert install(node, "v1")[0] == 0
    code, log = install(node, "v2")
    assert code == 0, log
    assert "replacing the build there" in log
    after = snapshot(node["bin"])
    assert (node["bin"] / "calico-py.d" / "_internal" / "base_library.zip").read_text() == "modules 0.2\n"
    assert (node["bin"] / "calico-py-ipam").resolve() == (node["bin"] / "calico-py.d" / "launcher")
    assert sorted(p.name for p in node["bin"].iterdir()) == ["calico-py", "calico-py-ipam", "calico-py.d"]
    assert install(node, "v2")[0] == 0
    assert snapshot(node["bin"]) == after
    assert sorted(p.name for p in node["net"].iterdir()) == ["10-calico-py.conflist",
                                                            "calico-py-kubeconfig"]


def test_a_process_holding_the_old_build_keeps_it(node):
    assert install(node, "v1")[0] == 0
    library = node["bin"] / "calico-py.d" / "_internal" / "lib" / "libpython3.11.so.1.0"
    with library.open() as mapped:
        assert install(node, "v2")[0] == 0
        # The old file was unlinked with its directory, never written over.
        assert mapped.read() == "libpython 0.1\n"
    assert library.read_text() == "libpython 0.2\n"


def test_the_directories_are_exchanged_in_one_rename(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (first / "a").write_text("a")
    second.mkdir()
    (second / "b").write_text("b")
    if not exchange(str(first), str(second)):
        pytest.skip("this filesystem cannot exchange two paths")
    assert [p.name for p in first.iterdir()] == ["b"]
    assert [p.name for p in second.iterdir()] == ["a"]


def test_without_the_exchange_it_still_replaces_and_says_so(node, monkeypatch):
    assert install(node, "v1")[0] == 0
    monkeypatch.setattr(build, "exchange", lambda _first, _second: False)
    code, log = install(node, "v2")
    assert code == 0, log
    assert "cannot exchange two directories" in log
    assert (node["bin"] / "calico-py.d" / "calico-py").read_text().endswith("0.2\n")
    assert sorted(p.name for p in node["bin"].iterdir()) == ["calico-py", "calico-py-ipam", "calico-py.d"]


def test_what_a_killed_run_left_is_removed(node):
    (node["bin"] / ".calico-py.d.0badf00d" / "_internal").mkdir(parents=True)
    (node["bin"] / ".tmp-calico-py-ipam-0badf00d").symlink_to("calico-py.d/launcher")
    (node["net"] / ".tmp-calico-py-kubeconfig-0badf00d").write_text("token: old\n")
    (node["bin"] / "loopback").write_text("someone else's\n")
    assert install(node)[0] == 0
    assert sorted(p.name for p in node["bin"].iterdir()) == [
        "calico-py", "calico-py-ipam", "calico-py.d", "loopback"]
    assert sorted(p.name for p in node["net"].iterdir()) == ["10-calico-py.conflist",
                                                            "calico-py-kubeconfig"]


NO_PLUGIN = json.dumps({"cniVersion": "1.0.0", "name": "k8s", "plugins": [{"type": "bridge"}]})
OURS = json.loads(CONFLIST)


def _with(**changes: Any) -> str:
    changed = json.loads(CONFLIST)
    changed["plugins"][0].update(changes)
    return json.dumps(changed)


@pytest.mark.parametrize("text, problem", [
    ("{\"cniVersion\": ", "is not valid JSON"),
    ("[]", "is not a conflist"),
    (NO_PLUGIN, "has no plugin of type 'calico-py'"),
    (json.dumps({**OURS, "cniVersion": "9.9.9"}), "cniVersion \"9.9.9\""),
    (_with(mtu="1500"), "mtu"),
    (_with(ipam={"type": "calico-py-ipam", "subnet": "10.0.0.0/33"}), "ipam.subnet"),
])
def test_a_bad_network_config_changes_nothing(node, text, problem):
    assert install(node, "v1")[0] == 0
    before = snapshot(node["bin"]), snapshot(node["net"])
    code, log = install(node, "v2", {**IN_POD, "CNI_NETWORK_CONFIG": text})
    assert code == 1
    assert "CNI_NETWORK_CONFIG" in log and problem in log, log
    assert (snapshot(node["bin"]), snapshot(node["net"])) == before


def test_without_a_network_config_it_says_where_one_comes_from(node):
    code, log = install(node, environ={k: v for k, v in IN_POD.items() if k != "CNI_NETWORK_CONFIG"})
    assert code == 1
    assert "CNI_NETWORK_CONFIG" in log and "cni_network_config" in log
    assert not list(node["bin"].iterdir())


def test_the_network_config_may_come_from_a_file(node, tmp_path):
    (tmp_path / "conflist").write_text(CONFLIST)
    environ = {**IN_POD, "CNI_NETWORK_CONFIG": "", "CNI_NETWORK_CONFIG_FILE": str(tmp_path / "conflist")}
    assert install(node, environ=environ)[0] == 0
    assert json.loads((node["net"] / "10-calico-py.conflist").read_text()) == OURS


def test_the_kubeconfig_holds_the_service_account_for_the_node(node):
    placeholder = _with(kubernetes={"kubeconfig": "__KUBECONFIG_FILEPATH__"})
    code, log = install(node, environ={**IN_POD, "CNI_NETWORK_CONFIG": placeholder})
    assert code == 0, log
    path = node["net"] / "calico-py-kubeconfig"
    assert path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.96.0.1:443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == Path(certifi.where()).read_bytes()
    assert config["users"][0]["user"] == {"token": "the-token"}
    # The datastore's own loader takes it, as the node's CNI executable will.
    connection = kubeconfig_loader.load(str(path))
    assert (connection.server, connection.token) == ("https://10.96.0.1:443", "the-token")
    # The conflist names it by its path on the node, not in the pod.
    written = json.loads((node["net"] / "10-calico-py.conflist").read_text())
    assert written["plugins"][0]["kubernetes"] == {"kubeconfig": "/etc/cni/net.d/calico-py-kubeconfig"}
    assert "calico-py-kubeconfig (mode 0600)" in log


def test_an_ipv6_api_server_is_bracketed(node):
    code, _log = install(node, environ={**IN_POD, "KUBERNETES_SERVICE_HOST": "fd00::1",
                                        "KUBERNETES_SERVICE_PORT": "6443"})
    assert code == 0
    config = yaml.safe_load((node["net"] / "calico-py-kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:6443"


def test_with_etcd_no_kubeconfig_is_written_or_needed(node):
    shutil.rmtree(node["sa"])
    environ = {"CNI_NETWORK_CONFIG": CONFLIST, "DATASTORE_TYPE": "etcdv3"}
    code, log = install(node, environ=environ)
    assert code == 0, log
    assert "DATASTORE_TYPE=etcdv3: no kubeconfig written" in log
    assert sorted(p.name for p in node["net"].iterdir()) == ["10-calico-py.conflist"]


@pytest.mark.parametrize("environ, problem", [
    ({**IN_POD, "DATASTORE_TYPE": "consul"}, "DATASTORE_TYPE='consul'"),
    ({"CNI_NETWORK_CONFIG": CONFLIST}, "KUBERNETES_SERVICE_HOST is not set"),
])
def test_a_datastore_it_cannot_reach_is_refused(node, environ, problem):
    code, log = install(node, environ=environ)
    assert code == 1 and problem in log, log
    assert not list(node["bin"].iterdir()) and not list(node["net"].iterdir())


def test_a_missing_service_account_is_named(node):
    (node["sa"] / "token").unlink()
    code, log = install(node)
    assert code == 1
    assert f"cannot read the pod's service account in {node['sa']}" in log
    assert not list(node["bin"].iterdir())


def test_a_missing_or_partial_source_is_named(node, tmp_path):
    log = io.StringIO()
    options = command.Options(source=str(tmp_path / "nowhere"), bin_dir=str(node["bin"]),
                              conf_dir=str(node["net"]), service_account=str(node["sa"]))
    assert command.run(options, IN_POD, log) == 1
    assert "does not exist (pass --source" in log.getvalue()
    (node["v1"] / "launcher").unlink()
    code, log_text = install(node)
    assert code == 1 and "has no executable launcher" in log_text


def test_run_from_source_it_needs_to_be_told_the_build(node):
    log = io.StringIO()
    options = command.Options(bin_dir=str(node["bin"]), conf_dir=str(node["net"]),
                              service_account=str(node["sa"]))
    assert command.run(options, IN_POD, log) == 1
    assert "not a frozen build" in log.getvalue() and "--source" in log.getvalue()


def test_unusable_node_directories_are_named(node, tmp_path):
    log = io.StringIO()
    options = command.Options(source=str(node["v1"]), bin_dir=str(tmp_path / "missing"),
                              conf_dir=str(node["net"]), service_account=str(node["sa"]))
    assert command.run(options, IN_POD, log) == 1
    assert "CNI bin dir" in log.getvalue() and "--bin-dir" in log.getvalue()
    (tmp_path / "a-file").write_text("")
    log = io.StringIO()
    options = command.Options(source=str(node["v1"]), bin_dir=str(node["bin"]),
                              conf_dir=str(tmp_path / "a-file"), service_account=str(node["sa"]))
    assert command.run(options, IN_POD, log) == 1
    assert "CNI conf dir" in log.getvalue() and "/etc/cni/net.d there" in log.getvalue()
    assert not list(node["bin"].iterdir())


def test_the_conflist_name_must_be_a_conflist(node):
    code, log = install(node, environ={**IN_POD, "CNI_CONF_NAME": "10-calico-py.conf"})
    assert code == 1 and "ending in .conflist" in log


def test_the_command_line_reaches_it(node, monkeypatch, capsys):
    for key, value in IN_POD.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CNI_NETWORK_CONFIG", _with(kubernetes={"kubeconfig": "__KUBECONFIG_FILEPATH__"}))
    monkeypatch.setenv("CNI_CONF_NAME", "05-calico-py.conflist")
    code = run_cli(["install-cni", "--source", str(node["v1"]), "--bin-dir", str(node["bin"]),
                    "--conf-dir", str(node["net"]), "--host-conf-dir", "/etc/cni/other",
                    "--service-account", str(node["sa"])], "calico-py", io.StringIO())
    assert code == 0, capsys.readouterr().err
    written = json.loads((node["net"] / "05-calico-py.conflist").read_text())
    assert written["plugins"][0]["kubernetes"]["kubeconfig"] == "/etc/cni/other/calico-py-kubeconfig"
    assert "wrote" in capsys.readouterr().err
