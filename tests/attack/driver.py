"""Starting the plugin inside a node, killing it, and waiting for the node agent to go quiet.

Processes are started from threads that entered the node's network namespace
(setns) once: a child inherits its thread's namespace, so it starts in about
1 ms, where `ip netns exec` and `nsenter` take about 3 ms each (measured on
2 cores). The pid is the plugin's own (the launcher execs the frozen program),
and kills go through a pidfd, so a pid reused meanwhile is never hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cni_calico_py.agent.repair import PROCESS_NAME
from tests.attack.invariants import Attachment
from tests.netns import enter

T = TypeVar("T")
# The syscall an idle agent worker sleeps in (accept4, or accept), by machine.
_ACCEPT = {"x86_64": {"288", "43"}, "aarch64": {"242", "202"}}.get(platform.machine(), {"288", "43"})
TRY_AGAIN = 11
REPAIRER = PROCESS_NAME  # the agent's child that is not a worker
_inside = threading.local()  # .entered: this thread is in the node's namespace


def _enter(path: str) -> None:
    enter(path)
    _inside.entered = True


@dataclass
class Answer:
    """How one call ended: its exit code (negative: the signal that ended it) and stdout."""

    verb: str
    rc: int
    out: Any
    err: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL

    @property
    def code(self) -> int | None:
        return self.out.get("code") if isinstance(self.out, dict) else None

    @property
    def address(self) -> str | None:
        if self.rc != 0 or not isinstance(self.out, dict):
            return None
        ips = self.out.get("ips") or []
        return str(ips[0]["address"]).split("/")[0] if ips else None

    def misbehaviour(self, killed_by_us: bool) -> str | None:
        """Whether this is no CNI answer at all: a death we did not cause, or an error without JSON."""
        if self.rc < 0 and not (killed_by_us and self.killed):
            name = signal.Signals(-self.rc).name if -self.rc in signal.valid_signals() else "?"
            return (f"{self.verb} died of signal {-self.rc} ({name}) that the test did not send, "
                    f"answering nothing; stderr: {self.err.strip()[-300:]!r}")
        if self.rc > 0 and self.code is None:
            return (f"{self.verb} exited {self.rc} without a CNI error on stdout: "
                    f"{str(self.out)[:200]!r}; stderr: {self.err.strip()[-300:]!r}")
        return None

    def __str__(self) -> str:
        took = f"{self.seconds * 1000:.1f} ms"
        if self.killed:
            return f"{self.verb} killed after {took}"
        if self.rc < 0:
            return f"{self.verb} ended by signal {-self.rc} after {took}"
        if self.rc == 0:
            return f"{self.verb} -> 0{' ' + self.address if self.address else ''} ({took})"
        msg = self.out.get("msg", "") if isinstance(self.out, dict) else str(self.out)[:200]
        return f"{self.verb} -> {self.rc} code {self.code}: {msg[:160]} ({took})"


class Process:
    def __init__(self, verb: str, popen: subprocess.Popen[bytes]) -> None:
        self.verb = verb
        self.popen = popen
        self.pid = popen.pid
        self.started = time.perf_counter()
        self.pidfd = os.pidfd_open(popen.pid)

    def kill(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def wait(self, timeout: float = 120) -> Answer:
        try:
            out, err = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.popen.communicate()
            err += f"\n(no answer within {timeout:.0f} s: killed)".encode()
        seconds = time.perf_counter() - self.started
        os.close(self.pidfd)
        self.pidfd = -1
        text = out.decode(errors="replace")
        try:
            parsed: Any = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return Answer(self.verb, self.popen.returncode, parsed, err.decode(errors="replace"), seconds)


class NodeThreads:
    """Threads inside the node's network namespace: they start the plugin and run pod scripts."""

    def __init__(self, node_path: str, threads: int = 16) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="node",
                                       initializer=_enter, initargs=(node_path,))
        self.live: set[Process] = set()

    def spawn(self, verb: str, argv: Sequence[str], env: dict[str, str], stdin: bytes) -> Process:
        if not getattr(_inside, "entered", False):
            return self.pool.submit(self.spawn, verb, argv, env, stdin).result()
        popen = subprocess.Popen(list(argv), env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert popen.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            popen.stdin.write(stdin)
        with contextlib.suppress(BrokenPipeError):
            popen.stdin.close()
        popen.stdin = None  # written and closed: communicate() must leave it alone
        process = Process(verb, popen)
        self.live.add(process)
        return process

    def run_all(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run each job in a thread of its own inside the node; wait for all of them."""
        return [f.result() for f in [self.pool.submit(job) for job in jobs]]

    def close(self) -> None:
        for process in list(self.live):
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
        self.pool.shutdown(wait=True)


@dataclass
class Plugin:
    """The installed executable called as a runtime calls it, for one network."""

    threads: NodeThreads
    exe: str
    conf: dict[str, Any]
    cni_path: str
    agent_socket: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = field(init=False)
    # Calls the test did not kill that still gave no CNI answer; the tests report and clear it.
    misbehaved: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stdin = json.dumps(self.conf).encode()

    def env(self, verb: str, who: Attachment) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CALICO_PY_AGENT_SOCKET": self.agent_socket or "off",
            "CNI_COMMAND": verb, "CNI_CONTAINERID": who.container_id, "CNI_NETNS": who.netns,
            "CNI_IFNAME": who.ifname, "CNI_PATH": self.cni_path, "CNI_ARGS": who.cni_args,
            **self.extra_env,
        }

    def start(self, verb: str, who: Attachment) -> Process:
        return self.threads.spawn(verb, [self.exe], self.env(verb, who), self.stdin)

    def call(self, verb: str, who: Attachment) -> Answer:
        process = self.start(verb, who)
        answer = process.wait()
        self.threads.live.discard(process)
        self.judge(who, answer, killed_by_us=False)
        return answer

    def judge(self, who: Attachment, answer: Answer, killed_by_us: bool) -> None:
        problem = answer.misbehaviour(killed_by_us)
        if problem:
            self.misbehaved.append(f"{who}: {problem}")

    def delete_until_done(self, who: Attachment, log: RoundLog, attempts: int = 40) -> bool:
        """DEL as a runtime does: again until it answers 0 (after a pause when told to try again)."""
        for _ in range(attempts):
            answer = self.call("DEL", who)
            log.add(f"{who}: {answer}")
            if answer.rc == 0:
                return True
            time.sleep(0.2 if answer.code == TRY_AGAIN else 0.05)
        return False

    def typical_seconds(self, pods: Sequence[str], cycles: int = 2) -> dict[str, float]:
        """The median duration of an unhindered ADD and DEL, each pod once per cycle."""
        took: dict[str, list[float]] = {"ADD": [], "DEL": []}
        for cycle in range(cycles):
            for index, pod in enumerate(pods):
                who = Attachment(f"measure{cycle}x{index}", pod)
                for verb in ("ADD", "DEL"):
                    answer = self.call(verb, who)
                    if answer.rc != 0:
                        raise AssertionError(f"measuring: {who}: {answer}\n{answer.err[-2000:]}")
                    took[verb].append(answer.seconds)
        return {verb: statistics.median(values) for verb, values in took.items()}


class RoundLog:
    """What happened in one round, in order, with milliseconds since the round started."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.perf_counter()
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, text: str) -> None:
        with self.lock:
            self.lines.append(f"  {(time.perf_counter() - self.started) * 1000:8.1f} ms  {text}")

    def __str__(self) -> str:
        return "\n".join([self.title, *self.lines])


class AgentWorkers:
    """The node agent's worker processes, seen from /proc."""

    def __init__(self, agent_pid: int, size: int) -> None:
        self.agent_pid = agent_pid
        self.size = size

    def pids(self) -> set[int]:
        """The live workers (a killed one stays a child until the agent reaps it)."""
        try:
            with open(f"/proc/{self.agent_pid}/task/{self.agent_pid}/children") as children:
                listed = {int(pid) for pid in children.read().split()}
        except FileNotFoundError:
            return set()
        return {pid for pid in listed if _stat_of(pid)[0] not in ("Z", "X", "")
                and _comm(pid) != REPAIRER}

    @staticmethod
    def idle(pid: int) -> bool:
        """Whether the worker sleeps in accept, waiting for a request (else it serves one)."""
        try:
            with open(f"/proc/{pid}/syscall") as syscall:
                return syscall.read().split(" ", 1)[0].strip() in _ACCEPT
        except (FileNotFoundError, ProcessLookupError):
            return True

    def busy(self) -> list[int]:
        return sorted(pid for pid in self.pids() if not self.idle(pid))

    def kill_busy(self) -> list[int]:
        """SIGKILL every worker serving a request now; returns their pids."""
        killed = []
        for pid in self.busy():
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                if _stat_of(pid)[1] == self.agent_pid:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    killed.append(pid)
            except ProcessLookupError:
                pass
            finally:
                os.close(pidfd)
        return killed

    def wait_quiet(self, timeout: float = 30.0) -> str:
        """Wait until the pool is full and every worker idle; '' then, else what is still going on."""
        deadline = time.monotonic() + timeout
        quiet_polls = 0
        while True:
            pids = self.pids()
            busy = [p for p in pids if not self.idle(p)]
            quiet_polls = quiet_polls + 1 if len(pids) >= self.size and not busy else 0
            if quiet_polls >= 3:
                return ""
            if time.monotonic() > deadline:
                return (f"the agent did not go quiet within {timeout:.0f} s: {len(pids)} of "
                        f"{self.size} workers, busy {busy}")
            time.sleep(0.005)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _stat_of(pid: int) -> tuple[str, int]:
    """A process's state letter and parent pid ("", 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return "", 0
    return fields[0], int(fields[1])
