"""The one dispatch: the command-line tool without CNI_COMMAND, a CNI request with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cni_calico_py import __version__


def run_module(args, env_extra=None, stdin=b""):
    env = {k: v for k, v in os.environ.items() if k != "CNI_COMMAND"}
    env.update({"CALICO_PY_AGENT_SOCKET": "off", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "cni_calico_py", *args], env=env, input=stdin,
                          capture_output=True, check=False)


def test_without_cni_command_it_is_the_command_line_tool():
    proc = run_module(["--version"])
    assert proc.returncode == 0
    assert __version__ in proc.stdout.decode()


def test_with_cni_command_it_serves_the_request():
    proc = run_module([], {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert proc.returncode == 0
    assert "1.1.0" in json.loads(proc.stdout)["supportedVersions"]


def test_an_empty_cni_command_is_a_cni_error():
    proc = run_module([], {"CNI_COMMAND": ""}, b"{}")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 4
