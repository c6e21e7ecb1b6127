import io
import json
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from cni_calico_py.agent import client, framing, worker
from cni_calico_py.agent.stats import Report, Stats, percentiles
from cni_calico_py.cli import run_cli
from cni_calico_py.core import attachment_lock, versions
from ipam import validation as ipam_validation


def test_frames_survive_being_split():
    left, right = socket.socketpair()
    with left, right:
        payload = {"op": "cni", "stdin": "x" * 200_000}
        framing.send(left, payload)
        assert framing.receive(right) == payload


@pytest.mark.parametrize("raw", [struct.pack("!I", framing.MAX_FRAME + 1), struct.pack("!I", 3) + b"{x}"])
def test_oversized_or_broken_frames_are_refused(raw):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        with pytest.raises(framing.FrameError):
            framing.receive(right)


def test_a_peer_that_leaves_mid_frame():
    left, right = socket.socketpair()
    with right:
        left.sendall(struct.pack("!I", 50) + b"{")
        left.close()
        with pytest.raises(framing.FrameError, match="closed"):
            framing.receive(right)


def test_stats_percentiles():
    stats = Stats()
    for millis in range(1, 101):
        failed = not millis % 10
        stats.record(Report("ADD", int(failed), 7 if failed else 0, float(millis), 0.0))
    snapshot = stats.snapshot(pid=1)
    assert snapshot["served"] == {"ADD": 100} and snapshot["failed"] == {"ADD": 10}
    assert snapshot["latency_ms"]["ADD"] == {"p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 100.0}
    assert percentiles([]) == {}


def test_a_frame_must_arrive_whole_by_its_deadline():
    left, right = socket.socketpair()
    stop = threading.Event()

    def trickle():
        for byte in struct.pack("!I", 20) + b'{"op": "status"':
            if stop.wait(0.1):
                return
            left.send(bytes([byte]))

    with left, right:
        sender = threading.Thread(target=trickle)
        sender.start()
        started = time.monotonic()
        try:
            with pytest.raises(framing.FrameError, match="in time"):
                framing.receive(right, time.monotonic() + 0.3)
        finally:
            stop.set()
            sender.join()
        assert time.monotonic() - started < 1.0


def test_frames_the_agent_would_refuse_are_not_made():
    with pytest.raises(framing.FrameError, match="exceeds"):
        framing.encode({"stdin": "x" * framing.MAX_FRAME})


@pytest.mark.parametrize(("setting", "path"), [
    (None, framing.DEFAULT_SOCKET),
    ("", framing.DEFAULT_SOCKET),
    ("/tmp/a.sock", "/tmp/a.sock"),
    ("off", None),
])
def test_the_socket_setting(setting, path):
    environ = {} if setting is None else {framing.SOCKET_ENV: setting}
    assert framing.socket_path(environ) == path


@pytest.mark.parametrize(("stdin", "version"), [
    (b'{"cniVersion": "0.3.1", "name": "n"}', "0.3.1"),
    (b'{"cniVersion": "0.2.0"}', versions.LATEST),
    (b'{"cniVersion": ["1.0.0"]}', versions.LATEST),
    (b"[]", versions.LATEST),
    (b"\xff not json", versions.LATEST),
    (b"", versions.LATEST),
])
def test_error_11_when_the_agent_gives_no_answer(stdin, version):
    error = json.loads(client.unanswered(stdin, "the connection closed"))
    assert error["code"] == 11 and error["cniVersion"] == version
    assert "the connection closed" in error["msg"] and "not run again" in error["msg"]


def _fake_agent(path: str, behaviour: str, failures: list[BaseException]) -> threading.Thread:
    """An agent that reads one request and then does `behaviour`."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def serve():
        try:
            _serve()
        except BaseException as err:  # seen by the test, not lost in the thread
            failures.append(err)

    def _serve():
        with listener, listener.accept()[0] as conn:
            request = framing.receive(conn, time.monotonic() + 5)
            assert set(request) == {"op", "program", "env", "stdin"}
            assert set(request["env"]) <= set(framing.FORWARDED_ENV)
            if behaviour == "closes before ready":
                return
            if behaviour == "not ready":
                conn.sendall(framing.NOT_READY)
                return
            conn.sendall(framing.READY)
            assert conn.recv(1) == framing.GO
            if behaviour == "answers":
                framing.send_result(conn, 0, b'{"ok": 1}\n')
            elif behaviour == "bad frame":
                conn.sendall(struct.pack("!I", 2) + b"xx")
            elif behaviour == "half an answer":
                conn.sendall(struct.pack("!I", 100) + b"\0\0\0\0{")

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize(("behaviour", "outcome"), [
    ("answers", "answer"),
    ("closes before ready", "cold"),
    ("not ready", "cold"),
    ("closes after go", "error 11"),
    ("bad frame", "error 11"),
    ("half an answer", "error 11"),
])
def test_the_go_byte_commits_the_caller(tmp_path, behaviour, outcome):
    path = str(tmp_path / "agent.sock")
    failures: list[BaseException] = []
    agent = _fake_agent(path, behaviour, failures)
    environ = {framing.SOCKET_ENV: path, "CNI_COMMAND": "ADD", "HOME": "/root"}
    served = client.forward(environ, b'{"cniVersion": "0.4.0"}', "calico-py")
    agent.join()
    assert failures == []
    if outcome == "answer":
        assert served == (0, '{"ok": 1}\n')
    elif outcome == "cold":
        assert served is None
    else:
        assert served is not None and served[0] == 1
        error = json.loads(served[1])
        assert error["code"] == 11 and error["cniVersion"] == "0.4.0", error


def test_a_request_too_big_to_forward_is_not_sent(tmp_path):
    path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    with listener:
        listener.setblocking(False)
        big = b'{"x": "' + b"x" * framing.MAX_FRAME + b'"}'
        assert client.forward({framing.SOCKET_ENV: str(path)}, big, "calico-py") is None
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_the_bounds_nest():
    """Lock waits < the worker's deadline < the callers' deadline, in C as in Python."""
    launcher = (Path(__file__).resolve().parents[2] / "launcher" / "launcher.c").read_text()

    def define(name: str) -> str:
        found = re.search(rf"#define {name} (.+)", launcher)
        assert found, name
        return found.group(1).strip()

    field = ipam_validation.IpamModel.model_fields["lock_timeout"]
    (store_lock,) = [rule.le for rule in field.metadata if hasattr(rule, "le")]
    lock_waits = max(attachment_lock.WAIT_SECONDS, store_lock)
    assert lock_waits < worker.REQUEST_DEADLINE_SECONDS < client.RESULT_DEADLINE
    assert int(define("RESULT_DEADLINE_MS")) == client.RESULT_DEADLINE * 1000
    assert define("DEADLINE_TEXT") == f'"{client.RESULT_DEADLINE:g} s"'
    assert define("MAX_FRAME") == "(4u * 1024u * 1024u)" and framing.MAX_FRAME == 4 * 1024 * 1024
    assert define("TRIED_ENV") == f'"{framing.TRIED_ENV}"'
    listed = re.search(r"supported_versions\[\] = \{(.*?)NULL", launcher)
    assert listed
    supported = listed.group(1)
    assert tuple(re.findall(r'"([^"]+)"', supported)) == versions.SUPPORTED_VERSIONS


def test_the_worker_sees_its_caller_leave():
    left, right = socket.socketpair()
    with right:
        gone = worker._hangup_probe(right)
        assert not gone()
        left.close()
        assert gone()


def test_the_worker_finds_its_caller_itself():
    assert worker._caller_root(os.getpid()) == f"/proc/{os.getpid()}/root"
    assert worker._caller_root(0) is None
    left, right = socket.socketpair()
    with left, right:
        assert worker._peer(right) == (os.getpid(), os.getuid())


def test_the_worker_takes_only_the_cni_variables():
    env, stdin, program = worker._cni_request({
        "op": "cni", "program": "calico-py-ipam", "stdin": "{\u00ff}",
        "env": {"CNI_COMMAND": "ADD", "CNI_NETNS": "/x", "LD_PRELOAD": "/evil.so",
                "netns_root": "/elsewhere"},
    })
    assert env == {"CNI_COMMAND": "ADD", "CNI_NETNS": "/x"}
    assert stdin == b"{\xff}" and program == "calico-py-ipam"


@pytest.mark.parametrize(("setting", "asked"), [
    ("off", framing.DEFAULT_SOCKET),
    ("/tmp/elsewhere.sock", "/tmp/elsewhere.sock"),
    (None, framing.DEFAULT_SOCKET),
])
def test_agent_commands_never_take_off_for_a_path(monkeypatch, setting, asked):
    from cni_calico_py.agent import server

    seen = []
    monkeypatch.setattr(server, "status", lambda path: seen.append(path))
    if setting is None:
        monkeypatch.delenv(framing.SOCKET_ENV, raising=False)
    else:
        monkeypatch.setenv(framing.SOCKET_ENV, setting)
    out = io.StringIO()
    assert run_cli(["agent", "status"], "calico-py", out) == 1
    assert seen == [asked] and f"nothing answers on {asked}" in out.getvalue()
    assert run_cli(["agent", "status", "--socket", "off"], "calico-py", out) == 2
