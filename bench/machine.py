"""What the figures came from: the machine, the software, the code."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _output(*cmd: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def describe(repo: Path) -> list[str]:
    """Lines for the report header."""
    plugins = _output("dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins")
    commit = _output("git", "describe", "--always", "--dirty", cwd=repo)
    return [
        f"{_cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        f"Debian containernetworking-plugins {plugins or '?'}; calico-py at {commit or '?'}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
