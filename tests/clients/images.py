"""A busybox root filesystem and a docker-archive image of it, made offline.

No registry is reachable from the test machines, so the sandbox image is
built from Debian's busybox-static: one layer, a config and a manifest, the
layout `docker save` writes and `ctr images import` reads. The writer is the
one scripts/build_image.py makes the node image with.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path

from .helpers import require, run

# Loaded by its path: scripts/ is not a package, and making it one (or
# putting it on sys.path) only so the tests can reach one file would be the
# bigger surprise; this way exactly that file is what runs.
_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_image.py"
_spec = importlib.util.spec_from_file_location("calico_py_build_image", _SCRIPT)
assert _spec is not None and _spec.loader is not None, _SCRIPT
_build_image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build_image)

# PID 1 of the sandbox: sleeps until the runtime stops it.
SANDBOX_ENTRYPOINT = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]


def busybox_rootfs(dest: Path) -> Path:
    """`dest` as a root filesystem: static busybox and a link for each applet."""
    busybox = require("busybox", "busybox-static")
    if run(["ldd", busybox], check=False).returncode == 0:
        raise AssertionError(f"{busybox} is dynamically linked: apt-get install busybox-static")
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in run([busybox, "--list"]).stdout.split():
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    (dest / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (dest / "etc" / "resolv.conf").write_text("")
    return dest


def docker_archive(rootfs: Path, tar_path: Path, tag: str,
                   entrypoint: Sequence[str] | None = tuple(SANDBOX_ENTRYPOINT),
                   cmd: Sequence[str] | None = None, exposed_ports: Sequence[str] = ()) -> Path:
    """Write `rootfs` as a one-layer docker-archive image tagged `tag`.

    By default the image runs the sandbox's sleeper; `entrypoint` None leaves
    the entrypoint out (as busybox's image does, running `cmd`), and
    `exposed_ports` ("80/tcp") are listed as the image's own.
    """
    return Path(_build_image.docker_archive(rootfs, tar_path, tag, entrypoint=entrypoint, cmd=cmd,
                                            exposed_ports=exposed_ports))
