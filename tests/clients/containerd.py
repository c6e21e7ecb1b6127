"""A containerd of the tests' own: config, root, state and socket under a temp dir.

Its CRI plugin reads the test's CNI dirs. Whatever it leaves under
/run/containerd (the runc shims' state, fifos) is removed when it stops, unless
that directory existed before it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.netns import wait_for

from .helpers import require, run

RUN_CONTAINERD = Path("/run/containerd")
CGROUP_ROOT = Path("/sys/fs/cgroup")
K8S_NAMESPACE = "k8s.io"

# `netns_under_state`: "true" keeps pods' network namespaces under the state dir;
# "false" puts them where runtimes put them, /var/run/netns (a node with a mount
# namespace of its own, tests/k8s).
CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "{state}/runtime-v1"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  netns_mounts_under_state_dir = {netns_under_state}
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"""


class Containerd:
    def __init__(self, base: Path, cni_bin_dir: Path, cni_conf_dir: Path,
                 sandbox_image: str, env: dict[str, str] | None = None,
                 netns: str | None = None) -> None:
        self.containerd = require("containerd", "containerd")
        self.ctr_path = require("ctr", "containerd")
        require("runc", "runc")
        self.base = base
        self.socket = base / "containerd.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.cni_bin_dir = cni_bin_dir
        self.cni_conf_dir = cni_conf_dir
        self.sandbox_image = sandbox_image
        # A node namespace to run in (its path): the pods' host-side veths and
        # routes then land there. nsenter, not `ip netns exec`, which remounts
        # /sys and hides the cgroup v1 hierarchy runc needs.
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        # The daemon's environment is what its CNI plugins get.
        self.env = {**os.environ, **(env or {})}
        self._run_existed = RUN_CONTAINERD.exists()

    def start(self) -> None:
        for sub in ("root", "state"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(
            root=self.base / "root", state=self.base / "state", socket=self.socket,
            sandbox_image=self.sandbox_image, cni_bin_dir=self.cni_bin_dir,
            cni_conf_dir=self.cni_conf_dir, netns_under_state="true",
        ))
        with self.log.open("ab") as log:
            prefix = [require("nsenter", "util-linux"), f"--net={self.netns}"] if self.netns else []
            self.proc = subprocess.Popen(
                [*prefix, self.containerd, "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env=self.env,
            )
        try:
            wait_for(self._ready, "containerd's socket", timeout=30)
        except AssertionError:
            self.stop()
            raise AssertionError(f"containerd did not start:\n{self.log_tail()}") from None

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"containerd exited {self.proc.returncode}:\n{self.log_tail()}")
        if not self.socket.exists():
            return False
        return self.ctr("version", check=False).returncode == 0

    def ctr(self, *args: str, namespace: str = K8S_NAMESPACE, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([self.ctr_path, "--address", str(self.socket), "--namespace", namespace,
                    *args], check=check, timeout=timeout)

    def import_image(self, tar_path: Path) -> None:
        self.ctr("images", "import", str(tar_path))

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def restart(self) -> None:
        """Stop the daemon alone and start it again: the shims, hence the pods, live on."""
        self._stop_daemon()
        self.start()

    def stop(self) -> None:
        """Stop the daemon, the shims it started and their containers, then clean up.

        A shim killed leaves its container's processes running; they and their
        cgroups (`<hierarchy>/k8s.io/<container id>`) are removed by ID.
        """
        containers = self._container_ids()
        self._stop_daemon()
        self._kill_shims()
        _remove_cgroups(containers)
        self._unmount_leftovers()
        if not self._run_existed:
            shutil.rmtree(RUN_CONTAINERD, ignore_errors=True)

    def _container_ids(self) -> list[str]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        listed = self.ctr("containers", "ls", "-q", check=False)
        return listed.stdout.split() if listed.returncode == 0 else []

    def _stop_daemon(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def _kill_shims(self) -> None:
        # Shims run in sessions of their own; ours are those whose command
        # line names our socket.
        mark = str(self.socket).encode()
        for pid in _pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and mark in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)

    def _unmount_leftovers(self) -> None:
        base = str(self.base)
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            targets = [line.split()[1] for line in mounts]
        for target in sorted((t for t in targets if t.startswith(base)), key=len, reverse=True):
            run(["umount", "-l", target], check=False)


def _remove_cgroups(containers: list[str]) -> None:
    """Kill what runs in these containers' cgroups and remove the cgroups, in every hierarchy."""
    groups = [group for container in containers
              for group in CGROUP_ROOT.glob(f"*/{K8S_NAMESPACE}/{container}") if group.is_dir()]
    for group in groups:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for group in groups:
        with contextlib.suppress(AssertionError):
            wait_for(lambda g=group: not (g / "cgroup.procs").read_text().strip(),
                     f"the processes in {group} to exit", timeout=10)
        with contextlib.suppress(OSError):
            group.rmdir()


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
