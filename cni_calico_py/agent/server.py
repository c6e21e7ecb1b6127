"""`calico-py agent`: the plugin's code kept loaded, serving requests on a unix socket.

A fixed pool of workers, forked from the agent's warm state, accept on the
socket and serve requests concurrently (worker.py); a bad request or a crash
takes down at most its worker, which the agent replaces. Workers run the very
handler the executable runs; all state is on disk (the IPAM store and its
lock), so the lock holds across workers and cold-path processes alike, and a
restart loses nothing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import logs, versions
from ..core.constants import IPAM_PLUGIN_NAME
from . import framing
from .fallbacks import fallback_file
from .repair import RepairerChild, run_repairer
from .stats import REPAIR_PREFIX, Report, Stats
from .worker import Worker

if TYPE_CHECKING:
    from .metrics import Metrics

RESPAWN_PAUSE_SECONDS = 1.0


def warm_up() -> None:
    """Import and exercise everything a request needs before the first one arrives.

    Validation and a netlink round trip initialise what pydantic and pyroute2
    otherwise set up on first use, in every worker again.
    """
    from ipam import plugin as ipam_plugin
    from ipam import show  # noqa: F401

    from .. import config, main, plugin  # noqa: F401
    from ..commands import add, check, delete, housekeeping  # noqa: F401
    from ..dataplane import inspect, netlink  # noqa: F401

    sample = {
        "cniVersion": versions.LATEST, "name": "warm-up", "type": "calico-py",
        "ipam": {"type": IPAM_PLUGIN_NAME, "subnet": "10.0.0.0/26"},
    }
    config.parse_netconf(sample)
    config.validate_netconf(sample)
    ipam_plugin.validate(sample)
    with netlink.host_handle() as handle:
        handle.link_index("lo")
    from .rehearsal import rehearse

    rehearse()
    logs.configure("info")


def _bind(path: str) -> socket.socket:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    if path == framing.DEFAULT_SOCKET:
        os.chmod(directory, 0o700)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise SystemExit(f"another agent is serving {path}")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is 0600 from its first moment
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(256)
    return listener


def default_workers() -> int:
    """Enough to keep the cores busy while many workers sleep in the kernel.

    Deleting a veth waits ~20 ms in the kernel for the device to go, with no
    CPU used: measured on 2 cores, 64 DELs at once took 1.36 s with 2
    workers, 0.64 s with 4 and 0.34 s with 8 (ptp: 0.29 s).
    """
    return max(4, 4 * (os.cpu_count() or 1))


def serve_forever(path: str, workers: int | None = None, metrics_port: int | None = None,
                  repair: bool = True) -> int:
    """Serve until SIGTERM or SIGINT; with `metrics_port`, Prometheus metrics on 127.0.0.1;
    with `repair`, the repairer beside the workers (agent/repair.py)."""
    # entry.py gives command-line tools the default SIGPIPE (an operator's `| head`),
    # but a caller that closes its socket before its answer must cost a server an
    # EPIPE to handle, not its life. Workers and threads inherit this.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    logs.configure("info")
    warm_up()
    # Workers are forked from this state: frozen objects stay out of the
    # collector's reach, so it does not touch (and copy) their pages.
    gc.collect()
    gc.freeze()
    listener = _bind(path)
    size = workers or default_workers()
    metrics = None
    if metrics_port is not None:
        from .metrics import Metrics

        metrics = Metrics(path, size)
        try:
            metrics.serve(metrics_port)
        except OSError as err:
            listener.close()
            os.unlink(path)
            raise SystemExit(f"calico-py agent: cannot serve metrics on 127.0.0.1:{metrics_port}: "
                             f"{err.strerror or err}") from None
        logs.log.info("agent: metrics on http://127.0.0.1:%d/metrics", metrics_port)
    pool = _Pool(listener, size, metrics, repair)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logs.log.info("agent %d serving %s with %d workers%s", os.getpid(), path, pool.size,
                  "" if repair else ", repairing nothing")
    try:
        pool.run(lambda: stopping)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if metrics is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fallback_file(path))
        pool.stop()
        logs.log.info("agent %d stopped", os.getpid())
    return 0


class _Pool:
    """The workers, kept at full strength; their reports become the agent's figures."""

    def __init__(self, listener: socket.socket, size: int, metrics: Metrics | None = None,
                 repair: bool = True) -> None:
        self.listener = listener
        self.size = size
        self.stats = Stats()
        self.metrics = metrics
        self.started: dict[int, float] = {}  # worker pid: when it was forked
        self.repairer = RepairerChild() if repair else None
        self.refill_after = 0.0
        self.reports_r, self.reports_w = os.pipe()
        self.handoff_r, self.handoff_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        # SIGCHLD writes to this pipe, so a dead worker wakes the loop at once.
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        self._pending = b""

    def run(self, stopping: Callable[[], bool]) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.reports_r, selectors.EVENT_READ, self._read_reports)
        selector.register(self.handoff_r, selectors.EVENT_READ, self._answer_status)
        selector.register(self.wakeup_r, selectors.EVENT_READ, self._drain_wakeups)
        while not stopping():
            self._reap()
            self._fill()
            self._keep_repairer()
            for key, _ in selector.select(timeout=1.0):
                key.data()

    def _fill(self) -> None:
        if time.monotonic() < self.refill_after:
            return
        agent_pid = os.getpid()
        while len(self.started) < self.size:
            try:
                pid = os.fork()
            except OSError as err:
                logs.log.error("agent: cannot fork a worker: %s", err)
                return
            if pid == 0:
                self._close_for_child(listener=False)
                Worker(self.listener, self.reports_w, self.handoff_w).run(agent_pid)
            self.started[pid] = time.monotonic()

    def _keep_repairer(self) -> None:
        if self.repairer is None:
            return
        self.repairer.keep(lambda: self._close_for_child(listener=True),
                           lambda agent_pid: run_repairer(self.reports_w, agent_pid))

    def _close_for_child(self, listener: bool) -> None:
        """In a child: let go of what only the agent itself reads."""
        signal.set_wakeup_fd(-1)
        for fd in (self.reports_r, self.wakeup_r, self.wakeup_w):
            os.close(fd)
        self.handoff_r.close()
        if listener:
            self.handoff_w.close()
            self.listener.close()

    def _reap(self) -> None:
        for pid, started in list(self.started.items()):
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                if status:
                    logs.log.warning("agent: worker %d ended with status %#x; replacing it", pid, status)
                    if time.monotonic() - started < RESPAWN_PAUSE_SECONDS:
                        # Workers dying as they start would otherwise be forked in a tight loop.
                        self.refill_after = time.monotonic() + RESPAWN_PAUSE_SECONDS
            del self.started[pid]

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wakeup_r, 4096)

    def _read_reports(self) -> None:
        self._pending += os.read(self.reports_r, 65536)
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.startswith(REPAIR_PREFIX):
                what = line[len(REPAIR_PREFIX):].decode(errors="replace")
                self.stats.record_repair(what)
                if self.metrics is not None:
                    self.metrics.record_repair(what)
                continue
            try:
                report = Report.parse(line)
            except ValueError:
                logs.log.warning("agent: unreadable worker report %r", line)
                continue
            self.stats.record(report)
            if self.metrics is not None:
                self.metrics.record(report)

    def _answer_status(self) -> None:
        _, fds, _, _ = socket.recv_fds(self.handoff_r, 1, 1)
        for fd in fds:
            with socket.socket(fileno=fd) as conn:
                conn.settimeout(1.0)
                try:
                    framing.send(conn, {**self.stats.snapshot(os.getpid()), "workers": self.size})
                except OSError as err:  # the caller closed first: its loss alone
                    logs.log.info("agent: a status caller went away before its answer: %s", err)

    def stop(self) -> None:
        """Idle workers leave at once; busy ones finish the request they hold."""
        for pid in [*self.started, *(self.repairer.pids() if self.repairer else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        signal.set_wakeup_fd(-1)


def status(path: str) -> dict[str, Any] | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(path)
        framing.send(sock, {"op": "status"})
        reply = framing.receive(sock)
        return reply if isinstance(reply, dict) else None
    except (OSError, framing.FrameError):
        return None
    finally:
        sock.close()
