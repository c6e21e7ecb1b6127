"""A busybox root filesystem and a docker-archive image of it, made offline.

No registry is reachable from the test machines, so the sandbox image is
built from Debian's busybox-static: one layer, a config and a manifest, the
layout `docker save` writes and `ctr images import` reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .helpers import require, run

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


def _layer(rootfs: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as src:
                    tar.addfile(info, src)
            else:
                tar.addfile(info)
    return buf.getvalue()


def docker_archive(rootfs: Path, tar_path: Path, tag: str,
                   entrypoint: Sequence[str] | None = tuple(SANDBOX_ENTRYPOINT),
                   cmd: Sequence[str] | None = None, exposed_ports: Sequence[str] = ()) -> Path:
    """Write `rootfs` as a one-layer docker-archive image tagged `tag`.

    By default the image runs the sandbox's sleeper; `entrypoint` None leaves
    the entrypoint out (as busybox's image does, running `cmd`), and
    `exposed_ports` ("80/tcp") are listed as the image's own.
    """
    layer = _layer(rootfs)
    layer_digest = hashlib.sha256(layer).hexdigest()
    image_config: dict[str, Any] = {"Env": ["PATH=/bin"], "WorkingDir": "/"}
    if entrypoint is not None:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        image_config["Cmd"] = list(cmd)
    if exposed_ports:
        image_config["ExposedPorts"] = {port: {} for port in exposed_ports}
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/clients/images.py"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [f"{layer_digest}/layer.tar"],
    }]).encode()
    with tarfile.open(tar_path, "w") as tar:
        for name, data in ((f"{layer_digest}/layer.tar", layer), (config_name, config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return tar_path
