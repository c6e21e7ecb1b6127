"""`ipam.type` naming the plugin itself, through the installed executable: error 7 at once.

As its own IPAM the plugin would run itself again with the same config: an
ADD waited 120 s for its own attachment lock and answered 11, and a STATUS,
which takes no lock, ran itself again without end (30 processes after 4 s).
The plugin's own name and another name linked to its program are both refused
before anything changes, cold and through the agent.

Should that regress, no process may outlive the test: the call and the agent
each run in a process group of their own, killed whole when no answer comes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cni_calls import netconf
from tests.netns import Node, running_agent, wait_for

pytestmark = pytest.mark.netns

ANSWER_SECONDS = 5.0  # error 7 comes from the config alone; a cold start is ~50 ms
GIVE_UP_SECONDS = 20.0


def _live_members(pgid: int) -> list[int]:
    """The processes of a group that are not zombies (a zombie leader stays a member until reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                state, _ppid, group = stat.read().rsplit(")", 1)[1].split()[:3]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(group) == pgid and state != "Z":
            found.append(int(entry))
    return found


def _kill_group(pgid: int) -> None:
    """SIGKILL a process group until none of it runs: a process that forks meanwhile is caught next time."""
    def ended() -> bool:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        return not _live_members(pgid)

    wait_for(ended, f"process group {pgid} to end", timeout=10, interval=0.05)


@pytest.fixture(params=["cold", "agent"])
def node(request: pytest.FixtureRequest, bare_node: Node, exe: str, tmp_path: Path) -> Iterator[Node]:
    if request.param == "cold":
        yield bare_node
        return
    socket_path = str(tmp_path / "agent.sock")
    # setsid: the agent leads a process group (same pid), which its workers and
    # whatever they run share; a pid stays in use while its group has members.
    group = 0
    try:
        with running_agent(bare_node, exe, socket_path,
                           command=["setsid", exe, "agent", "--socket", socket_path]) as agent:
            group = agent.pid
            yield bare_node
    finally:
        if group:
            _kill_group(group)


def _call(node: Node, exe: str, env: dict[str, str], conf: dict[str, Any]) -> tuple[int, Any, float]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "CALICO_PY_AGENT_SOCKET": node.agent_socket or "off", **env}
    started = time.monotonic()
    proc = subprocess.Popen(["ip", "netns", "exec", node.name, exe], env=full_env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(conf).encode(), timeout=GIVE_UP_SECONDS)
    except subprocess.TimeoutExpired:
        out = None
    if out is None:
        _kill_group(proc.pid)
        proc.communicate()
        pytest.fail(f"no answer within {GIVE_UP_SECONDS:.0f} s (the plugin ran itself as its IPAM?)")
    took = time.monotonic() - started
    try:
        payload = json.loads(out)
    except ValueError:
        pytest.fail(f"not a CNI answer: {out!r}; stderr: {err.decode()[-1000:]!r}")
    return proc.returncode, payload, took


@pytest.mark.parametrize("verb", ["ADD", "STATUS"])
@pytest.mark.parametrize("alias", [None, "calico-py-again"], ids=["own-name", "symlink"])
def test_the_plugin_named_as_its_own_ipam_is_error_7_at_once(
        node: Node, exe: str, installed_bin: Path, tmp_path: Path, alias: str | None, verb: str) -> None:
    links = tmp_path / "links"
    links.mkdir()
    if alias:
        # As an operator might: another name in CNI_PATH for the installed calico-py.
        (links / alias).symlink_to(installed_bin / "calico-py")
    ipam_type = alias or "calico-py"
    store = tmp_path / "store"
    conf = netconf(store, "1.1.0", ipam={"type": ipam_type})
    pod = node.add_pod()
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "selfipam1", "CNI_NETNS": pod,
           "CNI_IFNAME": "eth0", "CNI_PATH": f"{links}:{installed_bin}", "CNI_ARGS": ""}

    rc, out, took = _call(node, exe, env, conf)

    assert rc == 1 and out["code"] == 7 and out["details"] == "ipam.type", out
    assert f"ipam.type '{ipam_type}' names this plugin itself" in out["msg"], out
    assert "'calico-py-ipam' for the built-in IPAM" in out["msg"], out
    assert took < ANSWER_SECONDS, f"answered after {took:.1f} s"
    reserved = [p.name for p in store.rglob("*") if p.name[0].isdigit()] if store.exists() else []
    assert reserved == [], f"addresses reserved: {reserved}"
    assert [link["ifname"] for link in node.links() if link["ifname"].startswith("cali")] == []
    pod_links = json.loads(subprocess.run(["ip", "-n", os.path.basename(pod), "-j", "link", "show"],
                                          check=True, capture_output=True, text=True).stdout)
    assert [link["ifname"] for link in pod_links] == ["lo"]
