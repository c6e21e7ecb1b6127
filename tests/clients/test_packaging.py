"""The installed executables and conflist, as an operator gets them from `make install`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.netns import Node

from .helpers import agent_env, in_netns, reservations, run

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
PACKAGED_CONFLIST = Path(__file__).resolve().parents[2] / "conf" / "10-calico-py.conflist"


def _clean_run(exe: Path, *args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """Run with nothing of Python's in the environment: no venv on PATH, no PYTHONPATH."""
    proc = run(["env", "-i", *(f"{k}={v}" for k, v in {**CLEAN_ENV, **env}.items()),
                str(exe), *args], check=False, input_text=stdin)
    return proc.returncode, proc.stdout, proc.stderr


def test_install_layout(installed: Path, installed_bin: Path) -> None:
    app = installed_bin / "calico-py.d"
    assert (app / "calico-py").is_file() and os.access(app / "calico-py", os.X_OK)
    assert (app / "_internal").is_dir()
    for program in ("calico-py", "calico-py-ipam"):
        link = installed_bin / program
        # Relative, so the bin dir can be moved or bind-mounted elsewhere.
        assert link.is_symlink() and os.readlink(link) == "calico-py.d/launcher"
    conf = installed / "etc" / "cni" / "net.d" / "10-calico-py.conflist"
    if not os.environ.get("CALICO_PY_INSTALLED"):
        assert conf.read_text() == PACKAGED_CONFLIST.read_text()


@pytest.mark.parametrize("program", ["calico-py", "calico-py-ipam"])
def test_runs_without_python(installed_bin: Path, program: str, tmp_path: Path) -> None:
    exe = installed_bin / program
    code, out, err = _clean_run(exe, CNI_COMMAND="VERSION",
                                stdin='{"cniVersion": "1.0.0"}')
    assert code == 0, err
    info = json.loads(out)
    assert {"0.3.1", "0.4.0", "1.0.0"} <= set(info["supportedVersions"])
    # Dispatch follows the name the program runs under, through the symlink.
    code, out, err = _clean_run(exe, "--version")
    assert code == 0, err
    assert out.startswith(f"{program} ")
    # A Python environment pointing elsewhere must not leak into the frozen one.
    code, out, err = _clean_run(exe, CNI_COMMAND="VERSION", stdin="{}",
                                PYTHONPATH=str(tmp_path), PYTHONHOME=str(tmp_path))
    assert code == 0, err
    assert json.loads(out)["supportedVersions"] == info["supportedVersions"]


def test_error_is_cni_json(installed_bin: Path) -> None:
    """A bad config comes back as a CNI error on stdout, code 7, from the frozen build."""
    code, out, _ = _clean_run(
        installed_bin / "calico-py", CNI_COMMAND="ADD", CNI_CONTAINERID="x",
        CNI_NETNS="/var/run/netns/none", CNI_IFNAME="eth0", CNI_PATH=str(installed_bin),
        stdin=json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "calico-py",
                          "ipam": {"type": "calico-py-ipam"}, "mtu": 1}),
    )
    assert code != 0
    error = json.loads(out)
    assert error["code"] == 7 and "mtu" in error["msg"]


def test_packaged_conflist(
    node: Node, runtime_bin_dir: Path, libcni_client: Path, tmp_path: Path,
) -> None:
    """The shipped conflist works as it is; only its state and log paths move to tmp.

    It chains portmap after the plugin, as Calico's own does, so the bin dir
    is a runtime's: the installed programs beside the reference plugins.
    """
    packaged = json.loads(PACKAGED_CONFLIST.read_text())
    assert packaged["cniVersion"] == "1.0.0" and packaged["name"] == "calico-py"
    plugin, portmap = packaged["plugins"]
    assert portmap == {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    assert plugin["type"] == "calico-py" and plugin["ipam"]["type"] == "calico-py-ipam"
    assert plugin["ipam"]["subnet"].endswith("/26")
    plugin["ipam"]["dataDir"] = str(tmp_path / "ipam")
    plugin["log_file_path"] = str(tmp_path / "cni.log")
    conf = tmp_path / "10-calico-py.conflist"
    conf.write_text(json.dumps(packaged))
    pod = node.add_pod()
    base = [str(libcni_client), "-conflist", str(conf), "-path", str(runtime_bin_dir),
            "-cache-dir", str(tmp_path / "cache"), "-netns", pod, "-id", "packaged"]
    env = agent_env(node.agent_socket)
    in_netns(node.name, *base, "validate", env=env)
    result = json.loads(in_netns(node.name, *base, "add", env=env).stdout)
    assert result["ips"][0]["address"].endswith("/32")
    in_netns(node.name, *base, "check", env=env)
    in_netns(node.name, *base, "del", env=env)
    assert reservations(tmp_path / "ipam", "calico-py") == []


def test_make_build_uses_the_projects_virtualenv(tmp_path: Path) -> None:
    """`make build` as the README shows it, with no PYTHON=, builds with .venv's PyInstaller."""
    repo = PACKAGED_CONFLIST.parents[1]
    if not (repo / ".venv" / "bin" / "python").exists():
        pytest.fail("no .venv: scripts/setup.sh makes it")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    plan = subprocess.run(["make", "-n", "-B", "build", f"DIST={tmp_path}/dist",
                           f"BUILD={tmp_path}/build"], cwd=repo, env=env,
                          capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/python -m PyInstaller" in plan, plan
