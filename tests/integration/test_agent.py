"""The node agent: served requests, its socket, bad clients, and a kill mid-burst."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cni_calls import Pod, netconf
from tests.netns import Node, agent_status, make_node, running_agent

pytestmark = pytest.mark.netns


@pytest.fixture
def bare_node(root) -> Node:
    with make_node() as made:
        yield made


def pod_for(node: Node, plugin_exe: str, cni_path: str, tmp_path, cid: str) -> Pod:
    return Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=netconf(tmp_path),
               netns=node.add_pod(), container_id=cid)


def test_agent_serves_add_check_del(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock):
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "agent1")
        pod.add()
        assert pod.check()[0] == 0
        assert pod.delete()[0] == 0
        state = agent_status(plugin_exe, sock)
    assert state is not None
    assert state["served"] == {"ADD": 1, "CHECK": 1, "DEL": 1}
    assert set(state["latency_ms"]["ADD"]) == {"p50", "p90", "p99", "max"}
    assert not os.path.exists(sock)  # removed on a clean stop


def test_status_says_when_no_agent_runs(plugin_exe, tmp_path):
    status = subprocess.run([plugin_exe, "agent", "status", "--socket", str(tmp_path / "none.sock")],
                            capture_output=True, text=True)
    assert status.returncode == 1 and "not running" in status.stdout


def test_other_users_are_refused(bare_node, plugin_exe, tmp_path):
    sock = str(tmp_path / "agent.sock")
    os.chmod(tmp_path, 0o755)
    with running_agent(bare_node, plugin_exe, sock):
        probe = subprocess.run(
            ["python3", "-c", "import os, socket; os.setuid(65534); "
             f"s = socket.socket(socket.AF_UNIX); s.connect({sock!r})"],
            capture_output=True, text=True,
        )
        assert probe.returncode != 0 and "PermissionError" in probe.stderr


def test_bad_clients_do_not_hurt_the_agent(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        for payload in (
            b"garbage that is not a frame",
            struct.pack("!I", 1 << 30) + b"{",  # claims a 1 GiB frame
            struct.pack("!I", 100) + b'{"op": "cni"',  # disconnects mid-frame
            struct.pack("!I", 2) + b"[]",
            struct.pack("!I", 13) + b'{"op": "cni"}',
        ):
            client = socket.socket(socket.AF_UNIX)
            client.connect(sock)
            client.sendall(payload)
            client.close()
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(sock)  # connects and never says anything
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "afterbad")
        pod.add()
        assert pod.delete()[0] == 0
        silent.close()
        assert agent.poll() is None
        assert agent_status(plugin_exe, sock)["served"]["ADD"] == 1


def test_dead_or_hung_agent_never_fails_a_pod(bare_node, plugin_exe, cni_path, tmp_path):
    # A socket file with nobody behind it: a crashed agent.
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()
    bare_node.agent_socket = str(dead)
    pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "deadagent")
    pod.add()
    assert pod.delete()[0] == 0

    # A listener that accepts and never answers: a hung agent.
    hung = socket.socket(socket.AF_UNIX)
    hung.bind(str(tmp_path / "hung.sock"))
    hung.listen(16)
    bare_node.agent_socket = str(tmp_path / "hung.sock")
    try:
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "hungagent")
        started = time.monotonic()
        pod.add()
        assert time.monotonic() - started < 30
        assert pod.delete()[0] == 0
    finally:
        hung.close()
        bare_node.agent_socket = None


def test_killing_the_agent_mid_burst_loses_nothing(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    count = 24
    pods = [pod_for(bare_node, plugin_exe, cni_path, tmp_path, f"burst{i}") for i in range(count)]
    with running_agent(bare_node, plugin_exe, sock) as agent, ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(pod.call, "ADD") for pod in pods]
        time.sleep(0.15)
        # ip netns exec execs the agent, so this is the agent's own pid.
        os.kill(agent.pid, signal.SIGKILL)
        outcomes = [f.result() for f in futures]

    addresses = {}
    for pod, (rc, out, err) in zip(pods, outcomes, strict=True):
        if rc == 0:
            pod.result = out
            addresses[pod.container_id] = pod.address()
        else:
            assert isinstance(out, dict) and "code" in out, (out, err)
    assert len(set(addresses.values())) == len(addresses), "an address was handed out twice"
    records = {}
    store = tmp_path / "testnet"
    for path in store.iterdir():
        if path.name[0].isdigit():
            records[path.name] = json.loads(path.read_text())["containerID"]
    # Every successful pod holds exactly its address; a failed ADD holds at most one.
    for cid, address in addresses.items():
        assert records.get(address) == cid
    assert len(records) == len(set(records.values()))
    # The runtime answers a failed ADD with DEL; afterwards the store is empty.
    for pod in pods:
        assert pod.delete()[0] == 0
    assert [p.name for p in store.iterdir() if p.name[0].isdigit()] == []
    assert [r for r in bare_node.routes() if r["dst"].startswith("10.252.7.")] == []


def test_agent_in_another_namespace_declines_and_the_caller_serves_itself(
    bare_node, plugin_exe, cni_path, tmp_path
):
    sock = str(tmp_path / "agent.sock")
    with make_node(index=2) as other, running_agent(other, plugin_exe, sock):
        bare_node.agent_socket = sock
        try:
            pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "elsewhere")
            big = {"prevResult": {"cniVersion": "1.0.0", "ips": [], "dns": {"search": ["x" * 60_000]}}}
            pod.conf = {**pod.conf, **big}
            pod.add()
            assert any(r["dst"] == pod.address() for r in bare_node.routes())
            assert not any(r["dst"] == pod.address() for r in other.routes())
            assert pod.delete()[0] == 0
        finally:
            bare_node.agent_socket = None
        assert agent_status(plugin_exe, sock)["served"] == {}


def _workers_of(agent_pid: int) -> set[int]:
    with open(f"/proc/{agent_pid}/task/{agent_pid}/children") as children:
        return {int(pid) for pid in children.read().split()}


def _wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_dead_worker_is_replaced(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        size = agent_status(plugin_exe, sock)["workers"]
        assert size >= 2
        _wait_for(lambda: len(_workers_of(agent.pid)) == size, "the pool never filled")
        victim = min(_workers_of(agent.pid))
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: victim not in _workers_of(agent.pid)
                  and len(_workers_of(agent.pid)) == size, "the dead worker was not replaced")
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "afterdeath")
        pod.add()
        assert pod.delete()[0] == 0
        assert agent_status(plugin_exe, sock)["served"] == {"ADD": 1, "DEL": 1}


def test_workers_leave_with_a_killed_agent(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        size = agent_status(plugin_exe, sock)["workers"]
        _wait_for(lambda: len(_workers_of(agent.pid)) == size, "the pool never filled")
        workers = _workers_of(agent.pid)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        _wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers),
                  "workers outlived their agent")
        # The socket file is still there, with nobody behind it: the caller serves itself.
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "orphaned")
        pod.add()
        assert pod.delete()[0] == 0
