"""The frozen build in the node's CNI bin dir, laid out as `make install` lays it out:

    <bin>/calico-py.d/                            the build: program, launcher, _internal/
    <bin>/calico-py      -> calico-py.d/launcher
    <bin>/calico-py-ipam -> calico-py.d/launcher

A runtime may run the plugin at any moment of an upgrade. The new build is
copied whole beside the old one and the two directories are exchanged in one
rename, so every lookup under calico-py.d/ finds one whole build, never a mix
and never nothing. The old build's files are unlinked, not overwritten, so a
process already running keeps its executable and libraries; one that imports
a module after the exchange reads the new build's copy of it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

from ..core.files import sync_directory
from .errors import InstallError
from .exchange import exchange

NAME = "calico-py"
BUILD = f"{NAME}.d"
LAUNCHER = "launcher"
PROGRAMS = (NAME, "calico-py-ipam")
# Every name made in the bin dir while installing starts with one of these, so the
# next run recognises and removes what a killed one left.
_STAGING = f".{BUILD}."
_LINK_TEMP = ".tmp-"


@dataclass(frozen=True)
class Installed:
    path: str
    replaced: bool
    # True when the system could not exchange the directories and there was a
    # moment without a build: a runtime calling then got "not found" and retries.
    gap: bool = False


def frozen_build() -> str | None:
    """The directory of the frozen build this process runs from; None when run from source."""
    if not getattr(sys, "frozen", False):
        return None
    return os.path.dirname(os.path.realpath(sys.executable))


def check_source(source: str) -> None:
    if not os.path.isdir(source):
        raise InstallError(f"the build directory {source} does not exist (pass --source the "
                           "directory `make build` makes, dist/calico-py.d)")
    for name in (NAME, LAUNCHER):
        path = os.path.join(source, name)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise InstallError(f"{source} is not a calico-py build: it has no executable {name} "
                               "(pass --source the directory `make build` makes, dist/calico-py.d)")


def install(source: str, bin_dir: str) -> Installed:
    """The build at <bin_dir>/calico-py.d with its links, replacing what was there."""
    _remove_leftovers(bin_dir)
    target = os.path.join(bin_dir, BUILD)
    staging = os.path.join(bin_dir, f"{_STAGING}{os.urandom(4).hex()}")
    try:
        _copy(source, staging)
        old, gap = _swap(staging, target)
    except BaseException:
        _remove(staging)
        raise
    if old is not None:
        _remove(old)
    for program in PROGRAMS:
        _link(bin_dir, program)
    sync_directory(bin_dir)
    return Installed(target, replaced=old is not None, gap=gap)


def _copy(source: str, staging: str) -> None:
    shutil.copytree(source, staging, symlinks=True, copy_function=_copy_file)
    # Synced before the exchange: after a crash the node has the old build or the
    # whole new one, not a new directory of empty files.
    for directory, _dirs, _files in os.walk(staging, topdown=False):
        sync_directory(directory)


def _copy_file(source: str, target: str) -> str:
    shutil.copy2(source, target)
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _swap(staging: str, target: str) -> tuple[str | None, bool]:
    """The staged build put at `target`: where the old one now is (None: there was none),
    and whether there was a moment without either."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return None, False
    if exchange(staging, target):
        return staging, False
    old = f"{staging}-old"
    os.rename(target, old)
    os.rename(staging, target)
    return old, True


def _link(bin_dir: str, program: str) -> None:
    """<bin>/<program> -> calico-py.d/launcher, replaced in one rename (as `make install`)."""
    path = os.path.join(bin_dir, program)
    wanted = f"{BUILD}/{LAUNCHER}"
    if os.path.islink(path) and os.readlink(path) == wanted:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        raise InstallError(f"{path} is a directory; calico-py puts a link to its launcher "
                           "there: remove the directory")
    temp = os.path.join(bin_dir, f"{_LINK_TEMP}{program}-{os.urandom(4).hex()}")
    os.symlink(wanted, temp)
    try:
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _remove_leftovers(bin_dir: str) -> None:
    link_temps = tuple(f"{_LINK_TEMP}{program}-" for program in PROGRAMS)
    for name in os.listdir(bin_dir):
        if name.startswith(_STAGING) or name.startswith(link_temps):
            _remove(os.path.join(bin_dir, name))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
