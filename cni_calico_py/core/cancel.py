"""Whether the caller of the request being served is still waiting for it.

A runtime that gives up on a request kills its caller; if the request then
ran, it could wire a pod after the runtime's DEL of that pod. A cold process
dies with its caller, so nothing is needed there. An agent worker serving a
forwarded request is not killed with it: it installs a probe here, and the
waits of a request (the attachment lock, the store lock) ask it before and
while waiting, so a request whose caller is gone never starts changing the
node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import CNIError, Code

_probe: Callable[[], bool] | None = None


def watch(caller_gone: Callable[[], bool] | None) -> None:
    """Install (or with None, remove) the probe telling whether the caller went away."""
    global _probe
    _probe = caller_gone


def caller_gone() -> bool:
    """Whether the caller went away (never, outside an agent worker)."""
    return _probe is not None and _probe()


def check(where: str) -> None:
    """Raise error 11 when the caller went away; `where` says what was about to happen."""
    if caller_gone():
        raise CNIError(
            Code.TRY_AGAIN_LATER,
            f"the caller went away before {where}; nothing was changed by this request",
            "the runtime's retry or DEL finds the state this request left",
        )


@contextmanager
def suspended() -> Iterator[None]:
    """Run the body to its end even if the caller goes: an undo must not stop half way."""
    global _probe
    saved, _probe = _probe, None
    try:
        yield
    finally:
        _probe = saved
