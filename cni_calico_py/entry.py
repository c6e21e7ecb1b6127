"""What the installed executables run: the agent's thin path first, else the full plugin."""

from __future__ import annotations

import os
import sys


def run() -> None:
    if os.environ.get("CNI_COMMAND"):
        from .agent.client import forward

        stdin = sys.stdin.buffer.read()
        served = forward(os.environ, stdin, os.path.basename(sys.argv[0]))
        if served is not None:
            code, out = served
            sys.stdout.write(out)
            sys.stdout.flush()
            sys.exit(code)
        from .main import main_with_stdin

        sys.exit(main_with_stdin(os.environ, stdin, sys.stdout, sys.argv))
    from .main import run as run_main

    run_main()
