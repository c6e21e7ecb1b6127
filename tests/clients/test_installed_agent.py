"""The node agent as the installed unit starts it, through the installed launcher."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cni_calico_py.agent import framing
from tests.cni_calls import Pod, netconf
from tests.netns import Node, inside, make_node, running_agent

from .helpers import run

UNIT = Path("lib/systemd/system/calico-py-agent.service")
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.netns


def unit_service(installed: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart's command and the Environment= settings of the installed unit."""
    unit = installed / UNIT
    if not unit.exists():
        pytest.fail(f"{unit} is not installed")
    command: list[str] = []
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ExecStart":
            command = shlex.split(value)
        elif key.strip() == "Environment":
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                env[name] = setting
    assert command, f"{unit} has no ExecStart"
    return command, env


def under_destdir(installed: Path, installed_bin: Path, path: str) -> Path:
    """Where an installed absolute path is in this install (DESTDIR, or a bin dir given)."""
    candidate = Path(str(installed) + path)
    return candidate if candidate.exists() else installed_bin / Path(path).name


def status(exe: Path, sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`calico-py agent status` through the installed launcher, the socket from the environment."""
    env = {"PATH": CLEAN_PATH, framing.SOCKET_ENV: sock}
    return run([str(exe), "agent", "status", *args], env=env, check=False, timeout=30)


@contextmanager
def unit_agent(node: Node, installed: Path, installed_bin: Path, sock: str,
               log: Path) -> Iterator[Path]:
    """The agent started exactly as the unit's ExecStart says, in the node's namespace."""
    command, unit_env = unit_service(installed)
    exe = under_destdir(installed, installed_bin, command[0])
    env = {"PATH": CLEAN_PATH, **unit_env, framing.SOCKET_ENV: sock}
    with running_agent(node, str(exe), sock, str(log), command=[str(exe), *command[1:]], env=env):
        yield exe


def test_the_units_agent_serves_the_configured_socket(
    root: None, installed: Path, installed_bin: Path, tmp_path: Path
) -> None:
    sock = str(tmp_path / "agent.sock")
    log = tmp_path / "agent.log"
    with make_node() as node, unit_agent(node, installed, installed_bin, sock, log) as exe:
        assert f"serving {sock} " in log.read_text(), log.read_text()
        assert not (tmp_path / "off").exists() and not Path("off").exists()
        text = status(exe, sock)
        assert text.returncode == 0 and text.stdout.startswith("agent: up"), text
        pod = Pod(node=node, exe=str(installed_bin / "calico-py"),
                  cni_path=f"{installed_bin}:/usr/lib/cni", conf=netconf(tmp_path),
                  netns=node.add_pod(), container_id="unitagent")
        pod.add()
        served = json.loads(status(exe, sock, "--json").stdout)["served"]
        assert served == {"ADD": 1}
        assert pod.delete()[0] == 0
        assert json.loads(status(exe, sock, "--json").stdout)["served"] == {"ADD": 1, "DEL": 1}
    assert not os.path.exists(sock)  # removed when the agent stopped


def test_status_never_takes_off_for_a_path(installed_bin: Path) -> None:
    """CALICO_PY_AGENT_SOCKET=off turns forwarding off; status still asks the default socket."""
    proc = status(installed_bin / "calico-py", framing.OFF)
    assert " off" not in proc.stdout, proc.stdout
    assert proc.returncode == 0 or f"nothing answers on {framing.DEFAULT_SOCKET}" in proc.stdout


def test_the_installed_agent_serves_metrics(
    root: None, installed: Path, installed_bin: Path, tmp_path: Path
) -> None:
    """The frozen build carries prometheus_client: --metrics-port works as installed."""
    sock = str(tmp_path / "agent.sock")
    exe = installed_bin / "calico-py"
    with make_node() as node, running_agent(
            node, str(exe), sock, command=[str(exe), "agent", "--socket", sock,
                                           "--metrics-port", "9466"]), inside(node.path), \
            urllib.request.urlopen("http://127.0.0.1:9466/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "calico_py_agent_workers " in text, text
