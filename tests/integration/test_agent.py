"""The node agent: served requests, its socket, bad clients, and a kill mid-burst."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from cni_calico_py.agent import framing
from cni_calico_py.agent.repair import PROCESS_NAME
from tests.cni_calls import Pod, netconf
from tests.netns import Node, agent_status, make_node, running_agent, wait_for

pytestmark = pytest.mark.netns


@pytest.fixture
def bare_node(root) -> Iterator[Node]:
    with make_node() as made:
        yield made


def pod_for(node: Node, plugin_exe: str, cni_path: str, tmp_path, cid: str) -> Pod:
    return Pod(node=node, exe=plugin_exe, cni_path=cni_path, conf=netconf(tmp_path),
               netns=node.add_pod(), container_id=cid)


def test_environment_bytes_reach_the_worker_as_the_cold_path_reads_them(
        bare_node, plugin_exe, cni_path, tmp_path):
    """Non-ASCII in CNI_* (here a 15-character, 16-byte ifname) means the same either way."""
    pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "bytes1")
    pod.ifname = "aaaaaaaaaaaaaa\u00e9"
    cold = pod.call("ADD")
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock):
        served = pod.call("ADD")
        state = agent_status(plugin_exe, sock)
    assert state is not None and state["served"] == {"ADD": 1}
    assert cold[1]["code"] == 4 and "16 bytes" in cold[1]["msg"], (cold, plugin_exe)
    assert served[:2] == cold[:2], (served, cold, plugin_exe)


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
    # Asked once per request: a caller that goes cold does not ask again.
    assert Path(sock + ".log").read_text().count("declined a request") == 2


def _workers_of(agent_pid: int) -> set[int]:
    """The agent's children but its repairer."""
    with open(f"/proc/{agent_pid}/task/{agent_pid}/children") as children:
        return {int(pid) for pid in children.read().split() if _comm(int(pid)) != PROCESS_NAME}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_the_repairer_runs_beside_the_workers_and_goes_with_a_killed_agent(
        bare_node, plugin_exe, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        def repairers() -> list[int]:
            with open(f"/proc/{agent.pid}/task/{agent.pid}/children") as children:
                return [int(p) for p in children.read().split() if _comm(int(p)) == PROCESS_NAME]

        wait_for(lambda: len(repairers()) == 1, "the repairer never started")
        first = repairers()[0]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(repairers()) == 1 and repairers()[0] != first,
                 "the repairer was not replaced")
        second = repairers()[0]
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        wait_for(lambda: not os.path.exists(f"/proc/{second}"), "the repairer outlived the agent")


def test_a_dead_worker_is_replaced(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        size = agent_status(plugin_exe, sock)["workers"]
        assert size >= 2
        wait_for(lambda: len(_workers_of(agent.pid)) == size, "the pool never filled")
        victim = min(_workers_of(agent.pid))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in _workers_of(agent.pid)
                 and len(_workers_of(agent.pid)) == size, "the dead worker was not replaced")
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "afterdeath")
        pod.add()
        assert pod.delete()[0] == 0
        assert agent_status(plugin_exe, sock)["served"] == {"ADD": 1, "DEL": 1}


def test_workers_leave_with_a_killed_agent(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        size = agent_status(plugin_exe, sock)["workers"]
        wait_for(lambda: len(_workers_of(agent.pid)) == size, "the pool never filled")
        workers = _workers_of(agent.pid)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers),
                 "workers outlived their agent")
        # The socket file is still there, with nobody behind it: the caller serves itself.
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "orphaned")
        pod.add()
        assert pod.delete()[0] == 0


# Requests that must wait for the store: a test holds its lock meanwhile.
PATIENT_IPAM = {"lockTimeoutSeconds": 60}


@contextmanager
def store_locked(store: Path) -> Iterator[None]:
    """Hold the IPAM store's lock (<dataDir>/<network>/lock) as another request would."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def spawn(pod: Pod, command: str) -> subprocess.Popen[bytes]:
    """A runtime's call of the plugin, left running (`ip netns exec` execs it: same pid)."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           framing.SOCKET_ENV: pod.node.agent_socket or framing.OFF, **pod.env(command)}
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(pod.conf).encode())
        stdin.seek(0)
        return subprocess.Popen(["ip", "netns", "exec", pod.node.name, pod.exe], env=env,
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def log_pids(log: Path, text: str) -> list[int]:
    """The pids of the processes that logged `text` (log lines: date time pid level ...)."""
    if not log.exists():
        return []
    fields = [line.split() for line in log.read_text().splitlines() if text in line]
    return [int(f[2]) for f in fields if len(f) > 2 and f[2].isdigit()]


def serving_pid(log: Path, container_id: str) -> int:
    """The process that started serving the ADD of `container_id` (after the go byte)."""
    wait_for(lambda: log_pids(log, f"ADD container={container_id} "), "the ADD never started")
    return log_pids(log, f"ADD container={container_id} ")[0]


def store_addresses(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.name[0].isdigit()) if store.is_dir() else []


def host_veths(node: Node) -> list[str]:
    return [link["ifname"] for link in node.links() if link["ifname"].startswith("cali")]


def logged_pod(node: Node, plugin_exe: str, cni_path: str, tmp_path: Path, cid: str,
               version: str = "1.0.0") -> Pod:
    pod = pod_for(node, plugin_exe, cni_path, tmp_path, cid)
    pod.conf = netconf(tmp_path, version, log_level="info", log_file_path=str(tmp_path / "cni.log"),
                       ipam=PATIENT_IPAM)
    return pod


def test_a_request_whose_worker_dies_after_go_is_not_run_again(
    bare_node, plugin_exe, cni_path, tmp_path
):
    sock = str(tmp_path / "agent.sock")
    log = tmp_path / "cni.log"
    store = tmp_path / "testnet"
    with running_agent(bare_node, plugin_exe, sock) as agent:
        pod = logged_pod(bare_node, plugin_exe, cni_path, tmp_path, "killedworker", "0.4.0")
        with store_locked(store):
            caller = spawn(pod, "ADD")
            worker = serving_pid(log, "killedworker")
            assert worker in _workers_of(agent.pid)
            os.kill(worker, signal.SIGKILL)
            # Still holding the lock: a caller running the ADD itself would wait for it.
            out, err = caller.communicate(timeout=20)
        assert caller.returncode == 1, (out, err)
        error = json.loads(out)
        assert error["code"] == 11 and error["cniVersion"] == "0.4.0", error
        assert "agent" in error["msg"] and "not run again" in error["msg"], error
        # Only the worker ever served it: nothing logged by the caller's own process.
        assert log_pids(log, "ADD container=killedworker ") == [worker]
        assert caller.pid not in log_pids(log, " ")
        assert store_addresses(store) == [] and host_veths(bare_node) == []
        assert pod.delete()[0] == 0


def test_a_request_whose_caller_left_does_not_run_after_the_del(
    bare_node, plugin_exe, cni_path, tmp_path
):
    sock = str(tmp_path / "agent.sock")
    log = tmp_path / "cni.log"
    store = tmp_path / "testnet"
    with running_agent(bare_node, plugin_exe, sock), ThreadPoolExecutor(1) as pool:
        pod = logged_pod(bare_node, plugin_exe, cni_path, tmp_path, "callerleft")
        with store_locked(store):
            caller = spawn(pod, "ADD")
            serving_pid(log, "callerleft")
            # The runtime gives up on the ADD (its timeout kills the plugin) and sends DEL.
            caller.kill()
            caller.wait()
            deleting = pool.submit(pod.delete)
            # The worker drops the ADD while it waits for the lock, before changing anything.
            wait_for(lambda: (agent_status(plugin_exe, sock) or {}).get("failed", {}).get("ADD"),
                     "the ADD of a caller that left still waits to run", timeout=20)
        rc, out, err = deleting.result(timeout=60)
        assert rc == 0, (out, err)
        time.sleep(0.5)
        assert store_addresses(store) == [] and host_veths(bare_node) == []
        assert "caller went away" in log.read_text()
        assert agent_status(plugin_exe, sock)["served"] == {"ADD": 1, "DEL": 1}


def test_trickling_clients_do_not_stall_requests(bare_node, plugin_exe, cni_path, tmp_path):
    sock = str(tmp_path / "agent.sock")
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            for byte in struct.pack("!I", 100) + b'{"op": "cni"':
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return  # the agent dropped it
                if stop.wait(3.0):
                    return

    with running_agent(bare_node, plugin_exe, sock), ThreadPoolExecutor(64) as pool:
        workers = agent_status(plugin_exe, sock)["workers"]
        for _ in range(workers + 2):  # more than the pool: every worker gets one
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(sock)
            pool.submit(trickle, conn)
        try:
            time.sleep(0.2)
            pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "aftertrickle")
            pod.add()
            # Served by the agent, not by a caller that gave up waiting for "ready".
            state = agent_status(plugin_exe, sock)
            assert state is not None, "the agent's workers are all held by trickling clients"
            assert state["served"] == {"ADD": 1}
            assert pod.delete()[0] == 0
        finally:
            stop.set()


def test_a_request_too_big_for_the_agent_is_served_by_its_caller(
    bare_node, plugin_exe, cni_path, tmp_path
):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock) as agent:
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, "bigrequest")
        big = {"cniVersion": "1.0.0", "ips": [], "dns": {"search": ["x" * (framing.MAX_FRAME + 1)]}}
        pod.conf = {**pod.conf, "prevResult": big}
        rc, out, err = pod.call("ADD")
        assert rc == 0, (rc, str(out)[:500], err[-2000:])
        pod.result = out
        assert agent_status(plugin_exe, sock)["served"] == {}
        assert agent.poll() is None
        pod.conf = {k: v for k, v in pod.conf.items() if k != "prevResult"}
        assert pod.delete()[0] == 0


def _call_with_private_mounts(pod: Pod, command: str, hidden: Path) -> tuple[int, str, str]:
    """The call from a mount namespace of its own, where CNI_NETNS is a bind mount on a
    tmpfs nobody else sees (as a runtime in a container of its own may pass it)."""
    hidden.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs tmpfs {hidden} && touch {hidden}/netns && "
              f"mount --bind {pod.netns} {hidden}/netns && exec {pod.exe}")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           framing.SOCKET_ENV: pod.node.agent_socket or framing.OFF,
           **pod.env(command), "CNI_NETNS": f"{hidden}/netns"}
    conf = pod.with_prev_result() if pod.result else pod.conf
    proc = subprocess.run(
        ["ip", "netns", "exec", pod.node.name, "unshare", "-m", "--propagation", "private",
         "sh", "-c", script],
        input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize("through", ["cold", "agent"])
def test_a_caller_with_mounts_of_its_own_is_served(bare_node, plugin_exe, cni_path, tmp_path,
                                                   through):
    sock = str(tmp_path / "agent.sock")
    with running_agent(bare_node, plugin_exe, sock):
        if through == "cold":
            bare_node.agent_socket = None
        pod = pod_for(bare_node, plugin_exe, cni_path, tmp_path, f"private{through}")
        rc, out, err = _call_with_private_mounts(pod, "ADD", tmp_path / "hidden")
        assert rc == 0, (out, err)
        pod.result = json.loads(out)
        assert any(r["dst"] == pod.address() for r in bare_node.routes())
        assert "eth0" in sh_links(pod.netns)
        assert _call_with_private_mounts(pod, "CHECK", tmp_path / "hidden")[0] == 0
        rc, out, err = _call_with_private_mounts(pod, "DEL", tmp_path / "hidden")
        assert rc == 0, (out, err)
        assert "eth0" not in sh_links(pod.netns)
        assert agent_status(plugin_exe, sock)["served"] == (
            {} if through == "cold" else {"ADD": 1, "CHECK": 1, "DEL": 1})


def sh_links(netns: str) -> list[str]:
    proc = subprocess.run(["ip", "-n", os.path.basename(netns), "-j", "link", "show"],
                          capture_output=True, text=True, check=True)
    return [link["ifname"] for link in json.loads(proc.stdout or "[]")]


def test_no_repair_runs_no_repairer(bare_node, plugin_exe, tmp_path):
    sock = str(tmp_path / "agent.sock")
    command = [plugin_exe, "agent", "--socket", sock, "--no-repair"]
    with running_agent(bare_node, plugin_exe, sock, command=command) as agent:
        size = agent_status(plugin_exe, sock)["workers"]
        wait_for(lambda: len(_workers_of(agent.pid)) == size, "the pool never filled")
        time.sleep(0.5)
        with open(f"/proc/{agent.pid}/task/{agent.pid}/children") as children:
            assert [p for p in children.read().split() if _comm(int(p)) == PROCESS_NAME] == []
    assert "repairing nothing" in Path(sock + ".log").read_text()
