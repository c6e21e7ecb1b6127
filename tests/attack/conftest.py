"""Fixtures for the attack tests: the installed executables, a node, its pods.

As in tests/clients, the session builds with `make build` and installs with
`make install DESTDIR=<tmp>` (into temporary directories, so a build of its
own never touches dist/ or build/), unless CALICO_PY_INSTALLED names a
DESTDIR (or a CNI bin dir) installed before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Node, make_node

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("calico-py", "calico-py-ipam")


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DESTDIR root the executables are installed under."""
    given = os.environ.get("CALICO_PY_INSTALLED")
    if given:
        return Path(given)
    if subprocess.run(["make", "--version"], capture_output=True).returncode:
        pytest.fail("make is not installed: apt-get install make")
    if subprocess.run([sys.executable, "-c", "import PyInstaller"], capture_output=True).returncode:
        pytest.fail(f"PyInstaller is not installed in {sys.executable}: pip install -e '.[build]'")
    base = tmp_path_factory.mktemp("attack-build")
    destdir = base / "root"
    proc = subprocess.run(
        ["make", "-C", str(REPO), "build", "install", f"DIST={base / 'dist'}",
         f"BUILD={base / 'build'}", f"DESTDIR={destdir}", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"make build install failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return destdir


@pytest.fixture(scope="session")
def installed_bin(installed: Path) -> Path:
    for candidate in (installed / "opt" / "cni" / "bin", installed):
        if all((candidate / p).exists() for p in PROGRAMS):
            return candidate
    pytest.fail(f"calico-py and calico-py-ipam are not installed under {installed}")


@pytest.fixture(scope="session")
def exe(installed_bin: Path) -> str:
    """The installed calico-py: the launcher, which runs the frozen program when it cannot forward."""
    return str(installed_bin / "calico-py")


@pytest.fixture
def bare_node(root: None) -> Iterator[Node]:
    """A node namespace of this test's own, removed with its pods whatever happens."""
    with make_node() as made:
        yield made
