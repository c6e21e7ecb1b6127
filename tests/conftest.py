from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Node, make_node, running_agent

REFERENCE_PLUGIN_DIR = "/usr/lib/cni"
REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ("calico-py", "calico-py-ipam")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (a CI timeout, `timeout`, an operator's kill) ends the run as Ctrl-C does.

    By default SIGTERM ends Python at once, and the namespaces, processes and
    mounts the running test made would stay. As KeyboardInterrupt, pytest
    unwinds every fixture and `finally` first.
    """
    def interrupt(_signum: int, _frame: object) -> None:
        # Once: a second SIGTERM must not cut the cleanup short (SIGKILL still can).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)


def _bin_dir() -> Path:
    """Where calico-py and calico-py-ipam live: an installed prefix, or the venv's bin."""
    configured = os.environ.get("CALICO_PY_BIN_DIR")
    if configured:
        return Path(configured)
    return Path(sys.executable).parent


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    path = _bin_dir()
    for exe in ("calico-py", "calico-py-ipam"):
        if not (path / exe).exists():
            pytest.fail(f"{exe} not found in {path}: install the package (pip install -e .) "
                        "or set CALICO_PY_BIN_DIR")
    return path


@pytest.fixture(scope="session")
def plugin_exe(bin_dir: Path) -> str:
    return str(bin_dir / "calico-py")


@pytest.fixture(scope="session")
def ipam_exe(bin_dir: Path) -> str:
    return str(bin_dir / "calico-py-ipam")


@pytest.fixture(scope="session")
def cni_path(bin_dir: Path) -> str:
    """CNI_PATH with this plugin first and Debian's reference plugins after it."""
    return f"{bin_dir}:{REFERENCE_PLUGIN_DIR}"


@pytest.fixture(scope="session")
def reference_plugins() -> Path:
    path = Path(REFERENCE_PLUGIN_DIR)
    if not (path / "ptp").exists() or not (path / "host-local").exists():
        pytest.fail("Debian's containernetworking-plugins are not installed "
                    "(apt-get install containernetworking-plugins)")
    return path


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("this test needs root and iproute2 to create network namespaces")


@pytest.fixture(params=["cold", "agent"])
def node(request: pytest.FixtureRequest, root: None, plugin_exe: str, tmp_path: Path) -> Iterator[Node]:
    """A node namespace; every test using it runs twice: plugin in-process, and through the agent.

    A test marked `no_repair` gets an agent without its repairer: CHECK must
    find what such a test breaks, and the repairer would put it back first.
    """
    with make_node() as made:
        if request.param == "cold":
            yield made
        else:
            sock = str(tmp_path / "agent.sock")
            no_repair = ["--no-repair"] if request.node.get_closest_marker("no_repair") else []
            command = [plugin_exe, "agent", "--socket", sock, *no_repair]
            with running_agent(made, plugin_exe, sock, command=command):
                yield made


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DESTDIR root of `make build` + `make install DESTDIR=<tmp>`, once per session.

    The build goes to temporary directories, never dist/ or build/.
    CALICO_PY_INSTALLED names a DESTDIR (or a CNI bin dir) installed before.
    """
    given = os.environ.get("CALICO_PY_INSTALLED")
    if given:
        return Path(given)
    if shutil.which("make") is None:
        pytest.fail("make is not installed: apt-get install make")
    if subprocess.run([sys.executable, "-c", "import PyInstaller"], capture_output=True).returncode:
        pytest.fail(f"PyInstaller is not installed in {sys.executable}: pip install -e '.[build]'")
    base = tmp_path_factory.mktemp("build")
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
