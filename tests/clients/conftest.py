"""Fixtures for the real-client tests: the installed executables and the clients.

Every test here uses what `make install` installs: the session's `installed`
fixture (tests/conftest.py) builds with `make build` and installs with
`make install DESTDIR=<tmp>`, unless CALICO_PY_INSTALLED names one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROGRAMS

from .containerd import Containerd
from .cri.client import CRIClient, compile_proto
from .helpers import (
    AGENT_SOCKET_ENV,
    IPAM_TYPE,
    REFERENCE_PLUGINS,
    HostState,
    conflist,
    go_tool,
    require,
    write_json,
)
from .images import busybox_rootfs, docker_archive
from .node_runtime import SANDBOX_IMAGE

GO_CLIENT = Path(__file__).with_name("go") / "libcni-client"
LIBCNI_SOURCE = Path("/usr/share/gocode/src/github.com/containernetworking/cni/libcni")
LOOPBACK = Path("/usr/lib/cni/loopback")
PORTMAP = Path("/usr/lib/cni/portmap")

# Test-only blocks: nothing on these machines routes 10.253.64.0/24.
CRI_BLOCK = "10.253.64.0/26"
CRI_NETWORK = "calico-py-cri"


@pytest.fixture(scope="session")
def bin_dir(installed_bin: Path) -> Path:
    """Overrides the top-level fixture: plugin_exe and cni_path use the installed files."""
    return installed_bin


@pytest.fixture(scope="session")
def runtime_bin_dir(installed_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNI bin dir for the runtimes: the installed programs, Debian's loopback and portmap.

    The links point at the real executable, so the dir still works where a
    test bind-mounts it over /opt/cni/bin.
    """
    for reference in (LOOPBACK, PORTMAP):
        if not reference.exists():
            pytest.fail(f"{reference} is missing: apt-get install containernetworking-plugins")
    path = tmp_path_factory.mktemp("cni-bin")
    for program in PROGRAMS:
        (path / program).symlink_to(os.path.realpath(installed_bin / program))
    shutil.copy2(LOOPBACK, path / "loopback")
    shutil.copy2(PORTMAP, path / "portmap")
    if IPAM_TYPE not in PROGRAMS:
        shutil.copy2(REFERENCE_PLUGINS / IPAM_TYPE, path / IPAM_TYPE)
    return path


@pytest.fixture(scope="session")
def libcni_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = require("go", "golang-go")
    if not LIBCNI_SOURCE.is_dir():
        pytest.fail(f"{LIBCNI_SOURCE} is missing: apt-get install golang-github-appc-cni-dev")
    out = tmp_path_factory.mktemp("go") / "libcni-client"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "GOCACHE": os.environ.get("GOCACHE", str(Path.home() / ".cache" / "go-build")),
    }
    proc = subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_CLIENT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"building the libcni client failed:\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def crictl_exe() -> Path:
    """Upstream crictl, built once per machine by scripts/go-tools.sh."""
    return go_tool("crictl")


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture(scope="session")
def containerd(
    tmp_path_factory: pytest.TempPathFactory, runtime_bin_dir: Path, rootfs: Path,
) -> Iterator[Containerd]:
    """A containerd of the session's own, its CRI plugin on the CRI test block."""
    base = tmp_path_factory.mktemp("containerd")
    conf_dir = base / "net.d"
    write_json(conf_dir / "10-calico-py.conflist",
               conflist(CRI_NETWORK, CRI_BLOCK, base / "ipam", base / "cni.log"))
    # The plugin forwards to an agent on this socket when one listens there
    # (the CRI test's agent variant); otherwise it runs cold.
    daemon = Containerd(base, runtime_bin_dir, conf_dir, SANDBOX_IMAGE,
                        env={AGENT_SOCKET_ENV: str(base / "agent.sock")})
    host = HostState.snapshot([CRI_BLOCK], [CRI_NETWORK])
    daemon.start()
    try:
        daemon.import_image(docker_archive(rootfs, base / "sandbox.tar", SANDBOX_IMAGE))
        yield daemon
    finally:
        daemon.stop()
        host.clean()


@pytest.fixture(scope="session")
def cri_generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return compile_proto(tmp_path_factory.mktemp("cri-gen"))


@pytest.fixture
def cri(containerd: Containerd, cri_generated: tuple[Any, Any]) -> Iterator[CRIClient]:
    client = CRIClient(containerd.socket, cri_generated)
    try:
        yield client
    finally:
        client.close()
