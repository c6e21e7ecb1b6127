"""podman with its CNI backend, configured entirely under a temp dir.

CONTAINERS_CONF and CONTAINERS_STORAGE_CONF point podman at the test's own
containers.conf and storage.conf: CNI dirs, storage, run and temp dirs are all
the test's, so nothing the machine's podman has (such as the bridge network in
/etc/cni/net.d) is used or changed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .helpers import AGENT_SOCKET_ENV, require, run

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin_dir}"]
network_config_dir = "{conf_dir}"
default_network = "{network}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
runtime = "runc"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
static_dir = "{base}/static"
"""

STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{base}/graph"
runroot = "{base}/run"
"""


class Podman:
    def __init__(self, base: Path, bin_dir: Path, conf_dir: Path, network: str) -> None:
        self.podman = require("podman", "podman")
        require("conmon", "conmon")
        require("catatonit", "catatonit")
        require("runc", "runc")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(CONTAINERS_CONF.format(
            base=base, bin_dir=bin_dir, conf_dir=conf_dir, network=network))
        (base / "storage.conf").write_text(STORAGE_CONF.format(base=base))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(base),
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
            # podman's CNI plugins inherit this: the plugin runs cold, whatever
            # agent the machine may have.
            AGENT_SOCKET_ENV: "off",
        }
        (base / "registries.conf").write_text("")

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run([self.podman, *args], check=check, timeout=timeout, env=self.env)

    def cleanup(self) -> None:
        """Remove every container of this configuration and what storage mounted."""
        self("rm", "--force", "--all", "--time", "0", check=False)
        base = str(self.base)
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            targets = [line.split()[1] for line in mounts]
        for target in sorted((t for t in targets if t.startswith(base)), key=len, reverse=True):
            run(["umount", "-l", target], check=False)
