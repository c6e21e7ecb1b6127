"""The node image: scripts/build_image.py over the installed build, imported by containerd, run.

The containers run with ctr's defaults, each in a network namespace of its
own holding only lo, so nothing they run reaches the machine's network.
Whatever the tests make (the tar, the image, its containers and their
cgroups) is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import cni_calico_py

from .containerd import CGROUP_ROOT, Containerd
from .helpers import run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_image.py"
NAMESPACE = "calico-py-image"
TAG = f"calico-py:{cni_calico_py.__version__}"
# What containerd calls an image imported under a short docker tag.
REFERENCE = f"docker.io/library/{TAG}"
APP = "/opt/calico-py/calico-py.d"

# Every ELF file of the build and BIRD's, listed by the image's own loader:
# a library the image lacks shows as "not found". The build's inner files
# get the search path its bootloader gives them.
LIBRARIES_RESOLVE = rf"""
status=0
for f in $(find {APP} /usr/sbin -type f); do
  [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
  case "$(dirname "$f")" in {APP}|/usr/sbin) lib= ;; *) lib={APP}/_internal ;; esac
  out=$(LD_LIBRARY_PATH=$lib /lib64/ld-linux-x86-64.so.2 --list "$f" 2>&1) || {{ echo "$f: $out"; status=1; }}
  case "$out" in *"not found"*) echo "$f: $out"; status=1 ;; esac
done
exit $status
"""

_names = itertools.count()


@pytest.fixture(scope="module")
def image(containerd: Containerd, installed_bin: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image of the installed build, imported into a namespace of its own; all of it removed after."""
    base = tmp_path_factory.mktemp("image")
    cgroups_before = set(CGROUP_ROOT.glob(f"*/{NAMESPACE}"))
    try:
        tar = base / "calico-py-image.tar"
        built = run([sys.executable, str(SCRIPT), "--dist", str(installed_bin), "--out", str(tar)],
                    timeout=300)
        assert built.stdout.split() == [TAG, str(tar)], built.stdout
        containerd.ctr("images", "import", str(tar), namespace=NAMESPACE, timeout=300)
        tar.unlink()
        yield REFERENCE
    finally:
        listed = containerd.ctr("images", "ls", "-q", namespace=NAMESPACE, check=False)
        for reference in listed.stdout.split():
            containerd.ctr("images", "rm", "--sync", reference, namespace=NAMESPACE, check=False)
        containerd.ctr("namespaces", "rm", NAMESPACE, check=False)
        # runc makes a parent cgroup per containerd namespace and leaves it.
        for group in set(CGROUP_ROOT.glob(f"*/{NAMESPACE}")) - cgroups_before:
            with contextlib.suppress(OSError):
                group.rmdir()
        shutil.rmtree(base, ignore_errors=True)


def _run(containerd: Containerd, image: str, *args: str,
         env: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`args` in a new container of `image` (they replace its entrypoint and command); removed after."""
    container = f"calico-py-image-{next(_names)}"
    command = [containerd.ctr_path, "--address", str(containerd.socket), "--namespace", NAMESPACE,
               "run", "--rm", *(f"--env={var}" for var in env), image, container, *args]
    try:
        # An empty stdin of ctr's own, not the test runner's.
        return run(command, check=False, timeout=60, input_text="")
    finally:
        left = containerd.ctr("containers", "ls", "-q", namespace=NAMESPACE, check=False)
        if container in left.stdout.split():
            containerd.ctr("tasks", "rm", "-f", container, namespace=NAMESPACE, check=False)
            containerd.ctr("containers", "rm", container, namespace=NAMESPACE, check=False)


def test_default_command_is_help(containerd: Containerd, image: str) -> None:
    proc = _run(containerd, image)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: calico-py"), proc.stdout


def test_version(containerd: Containerd, image: str) -> None:
    proc = _run(containerd, image, "calico-py", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"calico-py {cni_calico_py.__version__} "), proc.stdout


def test_ipam_answers_version(containerd: Containerd, image: str) -> None:
    # The request comes through a pipe in the container: ctr never closes the
    # container's stdin, and the plugin reads it to the end.
    proc = _run(containerd, image, "sh", "-c", """echo '{"cniVersion": "1.0.0"}' | calico-py-ipam""",
                env=["CNI_COMMAND=VERSION"])
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    answer = json.loads(proc.stdout)
    assert "1.0.0" in answer["supportedVersions"], answer


def test_bird(containerd: Containerd, image: str) -> None:
    proc = _run(containerd, image, "bird", "--version")
    assert proc.returncode == 0, proc.stderr
    assert "BIRD version 2." in proc.stdout + proc.stderr
    # BIRD reads a config, and birdc starts and looks for a daemon (none is there).
    script = ("printf 'router id 192.0.2.1;\\nprotocol device {}\\n' > /tmp/bird.conf"
              " && bird -p -c /tmp/bird.conf && birdc -s /tmp/none show status")
    proc = _run(containerd, image, "sh", "-c", script)
    assert "Unable to connect to server control socket" in proc.stdout + proc.stderr, proc


def test_layout(containerd: Containerd, image: str) -> None:
    script = (f"ls {APP}; echo ---; readlink /usr/local/bin/calico-py-ipam; readlink /var/run;"
              " stat -c %A /tmp; id -u; echo ---; ls /sys/class/net")
    proc = _run(containerd, image, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    listing, details, interfaces = proc.stdout.split("---\n")
    assert listing.split() == ["_internal", "calico-py", "launcher"], listing
    assert details.split() == [f"../../..{APP}/launcher", "/run", "drwxrwxrwt", "0"], details
    # ctr gave the container a network namespace of its own, not the machine's.
    assert interfaces.split() == ["lo"], interfaces


def test_every_library_is_in_the_image(containerd: Containerd, image: str) -> None:
    proc = _run(containerd, image, "sh", "-c", LIBRARIES_RESOLVE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
