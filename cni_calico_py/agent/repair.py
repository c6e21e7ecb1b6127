"""The agent's repairer process (the repairer itself is cni_calico_py/repairer.py).

Forked by the agent beside its workers and replaced if it dies; it dies
with a killed agent, reports each repair to the agent on the workers'
report pipe, and names itself so that `ps` (and the tests) tell it from
the workers.
"""

from __future__ import annotations

import contextlib
import os

from ..repairer import Repairer

PROCESS_NAME = "calico-repairer"  # at most 15 characters: the kernel's comm


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
