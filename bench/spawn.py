"""Running a plugin as a runtime does: env + stdin in, stdout + exit code out.

Processes are started with posix_spawn and reaped with wait4, so the wall time
covers the whole process (start, work, exit) and the rusage comes with it.
wait4's ru_maxrss is the largest resident set of the child and of every
descendant it reaped (the kernel folds children in), so for ptp it is the
larger of ptp and its host-local child.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Children still running, so an interrupted run can kill them before cleanup.
_live: set[int] = set()


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: bytes
    stderr: bytes
    seconds: float
    maxrss_kib: int
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


class _Child:
    """One started process with its pipes; stdin is written at once (configs are small)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, in_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        self.started = time.perf_counter()
        try:
            self.pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
        except OSError:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        _live.add(self.pid)
        self.out = bytearray()
        self.err = bytearray()
        self.open_fds = {out_r: self.out, err_r: self.err}
        try:
            os.write(in_w, stdin)
        except BrokenPipeError:
            pass
        finally:
            os.close(in_w)

    def reap(self) -> Outcome:
        _, status, usage = os.wait4(self.pid, 0)
        ended = time.perf_counter()
        _live.discard(self.pid)
        return Outcome(
            rc=os.waitstatus_to_exitcode(status), stdout=bytes(self.out), stderr=bytes(self.err),
            seconds=ended - self.started, maxrss_kib=usage.ru_maxrss,
            started=self.started, ended=ended,
        )


def run_many(
    jobs: Sequence[tuple[Sequence[str], Mapping[str, str], bytes]], timeout: float = 120.0
) -> list[Outcome]:
    """Start every job at once, read all their output, and reap them in order."""
    children = [_Child(argv, env, data) for argv, env, data in jobs]
    selector = selectors.DefaultSelector()
    owner: dict[int, _Child] = {}
    for child in children:
        for fd in child.open_fds:
            selector.register(fd, selectors.EVENT_READ)
            owner[fd] = child
    deadline = time.monotonic() + timeout
    try:
        while owner:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kill_all()
                raise TimeoutError(f"{len(owner)} pipe(s) still open after {timeout:.0f} s")
            for key, _ in selector.select(remaining):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if chunk:
                    owner[fd].open_fds[fd].extend(chunk)
                    continue
                selector.unregister(fd)
                os.close(fd)
                del owner.pop(fd).open_fds[fd]
    finally:
        for fd in owner:
            os.close(fd)
        selector.close()
    return [child.reap() for child in children]


def run(argv: Sequence[str], env: Mapping[str, str], stdin: bytes = b"", timeout: float = 120.0) -> Outcome:
    return run_many([(argv, env, stdin)], timeout)[0]


def kill_all() -> None:
    """Kill and reap every child still running (on Ctrl-C or a timeout)."""
    for pid in list(_live):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        _live.discard(pid)
