"""What the installed executables run, and `python -m cni_calico_py`: the one dispatch.

Without CNI_COMMAND in the environment the program is the operator's
command-line tool (cli.py). With it, a CNI request: handed to the agent if
one answers (the thin path), else served here by main.serve_text.
"""

from __future__ import annotations

import os
import sys


def _finish(code: int, out: str) -> None:
    """Print and leave without the interpreter's teardown.

    Everything this process opened is closed by then; tearing down pyroute2's
    and pydantic's modules only made a runtime wait ~50 ms longer per pod.
    """
    sys.stdout.write(out)
    sys.stdout.flush()
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def _count_fallback() -> None:
    """A request served here although an agent socket exists: the agent's metrics count it."""
    from .agent import fallbacks
    from .agent.framing import socket_path

    path = socket_path(os.environ)
    if path is not None and os.path.exists(path):
        fallbacks.record(path, os.environ.get("CNI_COMMAND", "?"))


def run() -> None:
    program = os.path.basename(sys.argv[0]) if sys.argv else "calico-py"
    if "CNI_COMMAND" not in os.environ:  # set but empty is a CNI request, and error 4
        import signal

        from .cli import run_cli

        # An operator's `| head` ends the output quietly, as for any command-line tool
        # (the launcher ignores SIGPIPE, and that would be inherited here). `agent run`,
        # a server, ignores it again (agent/server.py): a caller closing early is no death.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        sys.exit(run_cli(sys.argv[1:], program, sys.stdout))
    from .agent.client import forward
    from .agent.framing import TRIED_ENV

    stdin = sys.stdin.buffer.read()
    # The launcher tried the agent already; the mark is not passed on to delegated plugins.
    tried = os.environ.pop(TRIED_ENV, "") == "1"
    served = None if tried else forward(os.environ, stdin, program)
    if served is None:
        from .main import serve_text

        served = serve_text(os.environ, stdin, program)
        _count_fallback()
    _finish(*served)
