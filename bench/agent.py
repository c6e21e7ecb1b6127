"""The node agent behind the agent variant, started inside the benchmark's node."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .variants import Variant


@contextmanager
def running(chosen: Sequence[Variant], say: Callable[[str], None]) -> Iterator[None]:
    """Run `calico-py agent` for the agent variant; the caller is already in the node's netns."""
    variant = next((v for v in chosen if v.key == "agent"), None)
    if variant is None:
        yield
        return
    socket = dict(variant.extra_env)["CALICO_PY_AGENT_SOCKET"]
    say(f"starting the agent on {socket}")
    proc = subprocess.Popen([variant.exe, "agent", "--socket", socket],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _answers(variant.exe, socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(exe: str, socket: str) -> bool:
    status = subprocess.run([exe, "agent", "status", "--socket", socket], capture_output=True)
    return status.returncode == 0
