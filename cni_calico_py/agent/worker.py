"""One of the agent's workers: accepts connections and serves them, one at a time.

Workers are forked once, from the agent's warm state, and then serve many
requests: forking per request cost each pod a fork and the copy-on-write of
every page the request touched, and let a burst of pods start as many
processes, all polling the same store lock. A worker that dies (crash,
hung-request alarm, its request budget used up) is replaced by the agent.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from ..core import cancel, logs
from . import framing
from .stats import Report

# The whole request frame, from accept: a client trickling bytes holds a
# worker this long at most. Callers send the frame in one go.
REQUEST_FRAME_SECONDS = 1.0
# Between "ready" and the go byte, which callers send at once.
GO_TIMEOUT = 5.0
# Above every wait of a request (ipam.lockTimeoutSeconds, at most 120 s; the
# attachment lock, 120 s): a request still running then is hung, and the
# worker is ended by the kernel's default SIGALRM action. Its caller sees the
# connection close (EOF) and reports error 11; callers wait 330 s from the go
# byte (client.py RESULT_DEADLINE, launcher.c RESULT_DEADLINE_MS), so they
# always hear the worker's end first.
REQUEST_DEADLINE_SECONDS = 300
# A fresh worker now and then bounds whatever a long-lived process accumulates.
REQUESTS_PER_WORKER = 2000
# Descriptors a worker may have gained over its life before it is replaced.
FD_SLACK = 32
PR_SET_PDEATHSIG = 1
_UCRED = struct.Struct("3i")


class Worker:
    def __init__(self, listener: socket.socket, reports_w: int, handoff: socket.socket) -> None:
        self.listener = listener
        self.reports_w = reports_w
        self.handoff = handoff  # status requests go to the agent, which keeps the figures
        self.busy = False
        self.stopping = False

    def run(self, agent_pid: int) -> None:
        """Serve until told to stop or the agent goes away; never returns."""
        code = 0
        try:
            self._enter(agent_pid)
            home = framing.netns_identity()
            fds = _open_fds()
            served = 0
            while not self.stopping and served < REQUESTS_PER_WORKER and self._sound(home, fds):
                conn, _ = self.listener.accept()
                self.busy = True
                try:
                    self._serve(conn)
                except (BrokenPipeError, ConnectionResetError) as err:
                    # A runtime's timeout, a probe that does not wait: nothing to fix here.
                    logs.log.info("agent worker: the caller went away before its answer: %s", err)
                except Exception as err:  # a bad request ends its connection, never the worker
                    logs.log.warning("agent worker: %s: %s", type(err).__name__, err)
                finally:
                    conn.close()
                    signal.alarm(0)
                    self.busy = False
                served += 1
        except BaseException as err:  # never unwind into the agent's own loop
            logs.log.warning("agent worker %d: %s: %s", os.getpid(), type(err).__name__, err)
            code = 1
        finally:
            os._exit(code)

    def _enter(self, agent_pid: int) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        # A caller that closes before its answer is an EPIPE for _serve, never this worker's end.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # A killed agent must not leave workers accepting on its socket.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != agent_pid:
            raise SystemExit("the agent went away before the worker started")

    @staticmethod
    def _sound(home: list[int], fds: int) -> bool:
        """Whether the next request may run here, as a freshly forked worker would run it.

        A worker left in a pod's namespace (a failed return from setns) or
        leaking descriptors hands its socket to a replacement instead.
        """
        if framing.netns_identity() != home:
            logs.log.error("agent worker %d is not in the node's network namespace; leaving",
                           os.getpid())
            return False
        if _open_fds() > fds + FD_SLACK:
            logs.log.error("agent worker %d holds %d more descriptors than it started with; "
                           "leaving", os.getpid(), _open_fds() - fds)
            return False
        return True

    def _stop(self, _signum: int, _frame: Any) -> None:
        """Idle: leave now. Busy: stop taking connections, finish the one in hand."""
        if not self.busy:
            os._exit(0)
        self.stopping = True
        self.listener.close()

    def _serve(self, conn: socket.socket) -> None:
        signal.alarm(REQUEST_DEADLINE_SECONDS)
        pid, uid = _peer(conn)
        if uid not in (0, os.getuid()):
            logs.log.warning("agent: refused a request from uid %d", uid)
            return
        request = framing.receive(conn, time.monotonic() + REQUEST_FRAME_SECONDS)
        if not isinstance(request, dict):
            raise framing.FrameError("request is not a JSON object")
        if request.get("op") == "status":
            socket.send_fds(self.handoff, [b"s"], [conn.fileno()])
            return
        env, stdin, program = _cni_request(request)
        root = _caller_root(pid)
        if root is None:
            # Serving it here would change the wrong namespace: let the caller do it.
            logs.log.info("agent: declined a request from pid %d in another network namespace", pid)
            conn.sendall(framing.NOT_READY)
            return
        conn.sendall(framing.READY)
        conn.settimeout(GO_TIMEOUT)
        if conn.recv(1) != framing.GO:
            return
        # The caller now waits for this answer and never runs the request itself.
        started = time.monotonic()
        from ..core import locks
        from ..main import serve_text

        locks.take_waited()

        cancel.watch(_hangup_probe(conn))
        try:
            code, out = serve_text(env, stdin, program, netns_root=root)
        finally:
            cancel.watch(None)
        millis = (time.monotonic() - started) * 1000
        report = Report(env.get("CNI_COMMAND", "?"), code, _cni_code(code, out), millis,
                        locks.take_waited() * 1000)
        os.write(self.reports_w, report.line())
        framing.send_result(conn, code, out.encode())


def _cni_code(exit_code: int, out: str) -> int:
    """The CNI error code of a failed request (0 for success), from its error JSON."""
    if exit_code == 0:
        return 0
    try:
        code = json.loads(out).get("code")
    except (ValueError, AttributeError):
        return 999
    return code if isinstance(code, int) else 999


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The connecting process, as the kernel saw it: (pid, uid); pid 0 if not visible here."""
    pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(pid), int(uid)


def _caller_root(pid: int) -> str | None:
    """Where the caller's files are seen from here, if it shares the worker's network namespace.

    The worker asks the kernel rather than trusting the frame. CNI_NETNS is
    the caller's path, opened beneath /proc/<pid>/root: a caller in a mount
    namespace of its own sees mounts the agent does not.
    """
    if pid <= 0:
        return None
    try:
        theirs = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    if [theirs.st_dev, theirs.st_ino] != framing.netns_identity():
        return None
    return f"/proc/{pid}/root"


def _hangup_probe(conn: socket.socket) -> Callable[[], bool]:
    """True once the caller went away: after the go byte it sends nothing, so any event is that."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLRDHUP | select.POLLERR)
    return lambda: bool(poller.poll(0))


def _cni_request(request: dict[str, Any]) -> tuple[dict[str, str], bytes, str]:
    env, stdin, program = request.get("env"), request.get("stdin"), request.get("program")
    if request.get("op") != "cni" or not isinstance(env, dict) or not isinstance(stdin, str):
        raise framing.FrameError("not a CNI request frame")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise framing.FrameError("env must map strings to strings")
    # The CNI variables only: nothing else of the frame reaches the handler.
    try:
        # Values are bytes, one code point each (latin-1): read them back as this
        # process would read its own environment, so both paths see one request.
        cni_env = {k: os.fsdecode(v.encode("latin-1"))
                   for k, v in env.items() if k in framing.FORWARDED_ENV}
        data = stdin.encode("latin-1")
    except UnicodeEncodeError:
        raise framing.FrameError("env and stdin must hold bytes as latin-1 code points") from None
    return cni_env, data, program if isinstance(program, str) else "calico-py"
