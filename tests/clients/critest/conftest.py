"""Fixtures for the critest run: the upstream binaries, the images, and what the run leaves.

critest and crictl are built from the Go module proxy by scripts/go-tools.sh
into a cache outside the repository; only a fresh machine pays for the build.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.netns import wait_for

from ..helpers import go_tool, run
from .images import build_archives

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The cgroup parent critest gives every sandbox when the runtime does not
# answer RuntimeConfig, as containerd 1.6 does (cri-tools pkg/common/pod_config.go).
CRITEST_CGROUP_PARENT = "test.slice"
# Sandbox and container IDs: what runc names their cgroups after.
RUNTIME_ID = re.compile(r"[0-9a-f]{64}")
# `ipcmk -M 1048576`: the segments critest's HostIpc specs make.
CRITEST_SHM_SIZE = 1048576


@pytest.fixture(scope="session")
def critest() -> Path:
    """critest v1.37.0 (a Ginkgo test binary), built once per machine."""
    return go_tool("critest")


@pytest.fixture(scope="session")
def e2e_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stand-in images as docker-archive tars, by the names critest looks up."""
    return build_archives(tmp_path_factory.mktemp("critest-images"))


def _cgroup_dirs() -> set[Path]:
    """Each hierarchy's cgroups two levels down, and everything under critest's cgroup parent."""
    found: set[Path] = set()
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir():
            continue
        for top in hierarchy.iterdir():
            if not top.is_dir():
                continue
            found.add(top)
            if top.name == CRITEST_CGROUP_PARENT:
                found.update(p for p in top.rglob("*") if p.is_dir())
                continue
            found.update(p for p in top.iterdir() if p.is_dir())
    return found


def _shm_segments() -> dict[str, int]:
    """The machine's System V shared-memory segments: id -> size."""
    segments = {}
    for line in run(["ipcs", "-m"]).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[1].isdigit() and fields[4].isdigit():
            segments[fields[1]] = int(fields[4])
    return segments


def _mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        targets = [line.split()[1] for line in mounts]
    return [t for t in targets if t == str(base) or t.startswith(f"{base}/")]


@dataclass
class Machine:
    """What the machine held before the run, to find and remove what the run left outside its dirs."""

    base: Path
    cgroups: set[Path] = field(default_factory=set)
    shm: dict[str, int] = field(default_factory=dict)

    @classmethod
    def snapshot(cls, base: Path) -> Machine:
        return cls(base, _cgroup_dirs(), _shm_segments())

    def clean(self, runtime_ids: set[str]) -> list[str]:
        """Remove what the run left; returns what that was.

        Processes naming the run's dir, and mounts under it. Cgroups: only the
        run's own go, new ones named after one of its sandboxes or containers
        (containerd 1.6 names them `test.slice:cri-containerd:<id>` for
        critest's systemd-style parent, `<parent>/<id>` otherwise) or under
        critest's parent, deepest first, their processes killed. runc removes
        them itself when a container goes. Shared-memory segments: critest
        makes them with `ipcmk -M 1048576` (HostIpc specs) in the IPC
        namespace it runs in, its own here; segments of that size new in the
        machine's are removed.
        """
        left: list[str] = []
        for pid in _pids_naming(self.base):
            left.append(f"process {pid}")
            _kill(pid)
        for mount in sorted(_mounts_under(self.base), key=len, reverse=True):
            left.append(f"mount {mount}")
            run(["umount", "-l", mount], check=False)
        ours = [path for path in _cgroup_dirs() - self.cgroups
                if CRITEST_CGROUP_PARENT in path.parts
                or any(runtime_id in path.name for runtime_id in runtime_ids)]
        for path in sorted(ours, key=lambda p: len(p.parts), reverse=True):
            if not path.exists():
                continue
            left.append(f"cgroup {path}")
            try:
                procs = (path / "cgroup.procs").read_text().split()
            except OSError:
                procs = []
            for member in procs:
                left.append(f"process {member} in cgroup {path.name}")
                _kill(int(member))
            try:
                wait_for(lambda gone=path: _rmdir(gone), f"cgroup {path} to go", timeout=10)
            except AssertionError as err:
                left.append(str(err))
        for shmid, size in _shm_segments().items():
            if shmid not in self.shm and size == CRITEST_SHM_SIZE:
                left.append(f"shared-memory segment {shmid}")
                run(["ipcrm", "-m", shmid], check=False)
        return left


def _pids_naming(base: Path) -> list[int]:
    """Processes whose command line names `base` (the daemon, its shims, the agent)."""
    mark = str(base).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmdline:
            found.append(int(entry))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
