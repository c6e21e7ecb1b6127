from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Node, make_node, running_agent

REFERENCE_PLUGIN_DIR = "/usr/lib/cni"


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
    """A node namespace; every test using it runs twice: plugin in-process, and through the agent."""
    with make_node() as made:
        if request.param == "cold":
            yield made
        else:
            with running_agent(made, plugin_exe, str(tmp_path / "agent.sock")):
                yield made
