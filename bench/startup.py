"""What every namespace-making benchmark does first: refuse to run without root, turn the
signals that end it into Ctrl-C (so every namespace is removed), and time its messages."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

Say = Callable[[str], None]


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def begin() -> Say:
    """The benchmark's `say`: a message on stderr with the seconds since it began."""
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark creates network namespaces")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    t0 = time.monotonic()

    def say(what: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {what}", file=sys.stderr, flush=True)

    return say
