"""The agent's repairer process (the repairer itself is cni_calico_py/repairer/).

Forked by the agent beside its workers and replaced if it dies; it dies
with a killed agent, reports each repair to the agent on the workers'
report pipe, and names itself so that `ps` (and the tests) tell it from
the workers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from ..core import logs
from ..repairer import Repairer

PROCESS_NAME = "calico-repairer"  # at most 15 characters: the kernel's comm
RESPAWN_PAUSE_SECONDS = 1.0


class RepairerChild:
    """The agent's side: the repairer forked, reaped and replaced (after a pause) when it dies."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.after = 0.0

    def pids(self) -> list[int]:
        return [self.pid] if self.pid is not None else []

    def keep(self, close_for_child: Callable[[], None], run: Callable[[int], None]) -> None:
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if not done:
                    return
                logs.log.warning("agent: the repairer %d ended with status %#x; replacing it",
                                 self.pid, status)
                self.after = time.monotonic() + RESPAWN_PAUSE_SECONDS
            self.pid = None
        if time.monotonic() < self.after:
            return
        agent_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:
            logs.log.error("agent: cannot fork the repairer: %s", err)
            return
        if pid == 0:
            code = 0
            try:
                close_for_child()
                run(agent_pid)
            except SystemExit:
                pass
            except BaseException:
                logs.log.exception("agent: the repairer failed")
                code = 1
            finally:
                os._exit(code)
        self.pid = pid


def run_repairer(reports: int, agent: int) -> None:
    """The repairer process's life: follow the node until the agent tells it to stop."""
    import ctypes
    import signal

    from .stats import REPAIR_PREFIX
    from .worker import PR_SET_PDEATHSIG

    def stop(_signum: int, _frame: object) -> None:
        # Nothing here needs finishing: a repair cut short is redone by the next one.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent's Ctrl-C stops it through the agent
    # A killed agent must not leave its repairer behind.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # For ps and top, and to tell it from the workers.
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii") as comm:
        comm.write(PROCESS_NAME)

    def report(what: str) -> None:
        with contextlib.suppress(OSError):  # the agent is going: the repair stands
            os.write(reports, REPAIR_PREFIX + what.encode() + b"\n")

    if os.getppid() != agent:
        return
    Repairer(report, "agent").run(lambda: os.getppid() != agent)
