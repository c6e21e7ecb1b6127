"""The node agent behind the agent variant, started inside the benchmark's node."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

from tests.netns import running_agent

from .variants import Variant


@contextmanager
def running(chosen: Sequence[Variant], say: Callable[[str], None]) -> Iterator[None]:
    """Run `calico-py agent` for the agent variant (log: the socket's path + ".log").

    The caller is already in the node's netns, and so is the agent.
    """
    variant = next((v for v in chosen if v.key == "agent"), None)
    if variant is None:
        yield
        return
    socket = dict(variant.extra_env)["CALICO_PY_AGENT_SOCKET"]
    say(f"starting the agent on {socket}")
    with ExitStack() as stack:
        try:
            stack.enter_context(running_agent(None, variant.exe, socket, timeout=60))
        except (RuntimeError, AssertionError) as e:
            raise SystemExit(str(e)) from None
        yield
