"""Upstream kubelet in standalone mode (static pods, no API server) in a test node.

kubelet runs in the node's network namespace (nsenter, so /sys and the cgroup
v1 hierarchy stay as they are) and in a mount namespace of its own, where
/var/lib and /var/log, which it writes to whatever `--root-dir` says, are bind
mounts of the test's directories. It reaches containerd's CRI socket;
the pods it asks for are wired by the installed plugin through containerd.

kubelet sets three global sysctls when it starts; `Kubelet.stop` puts back
what they were before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.netns import Node, inside, stop_process, wait_for

from ..helpers import require

# What kubelet changes on the machine as a whole, restored when it stops.
GLOBAL_SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory")
# kubelet writes /var/lib/kubelet/{pki,device-plugins} and /var/log/containers
# whatever its flags say: in its mount namespace these two are the test's.
PRIVATE_MOUNTS = {"/var/lib": "var-lib", "/var/log": "var-log"}
# kubelet's syncFrequency: within it, a pod kubelet thinks lost is re-created.
SYNC_SECONDS = 5

# What every test kubelet runs with on a cgroup v1 machine, in a node namespace
# (tests/k8s's kubelets too): `address` is where its API (10250) listens.
COMMON_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
address: {address}
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
"""

CONFIG = COMMON_CONFIG.format(address="127.0.0.1") + """\
staticPodPath: {manifests}
fileCheckFrequency: 1s
syncFrequency: {sync}s
podLogsDir: {pod_logs}
"""


class Kubelet:
    def __init__(self, exe: Path, base: Path, node: Node, runtime_socket: Path) -> None:
        self.exe = exe
        self.base = base
        self.node = node
        self.runtime_socket = runtime_socket
        self.manifests = base / "manifests"
        self.log = base / "kubelet.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self._sysctls = {name: _read_sysctl(name) for name in GLOBAL_SYSCTLS}

    def start(self) -> None:
        for sub in ("manifests", "root", "pki", "pod-logs", *PRIVATE_MOUNTS.values()):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        config = self.base / "kubelet.yaml"
        config.write_text(CONFIG.format(manifests=self.manifests, pod_logs=self.base / "pod-logs",
                                        sync=SYNC_SECONDS))
        binds = " && ".join(f"mount --bind {self.base / private} {target}"
                            for target, private in PRIVATE_MOUNTS.items())
        kubelet = " ".join([
            str(self.exe), f"--config={config}",
            f"--container-runtime-endpoint=unix://{self.runtime_socket}",
            f"--root-dir={self.base / 'root'}", f"--cert-dir={self.base / 'pki'}",
            # Without it kubelet resolves its own hostname, which a node
            # namespace cannot: 10 s per lookup, twice per pod.
            f"--node-ip={self.node.address}", f"--hostname-override={self.node.name}",
            "--v=2",
        ])
        argv = [require("nsenter", "util-linux"), f"--net={self.node.path}",
                require("unshare", "util-linux"), "--mount", "--propagation", "slave",
                "sh", "-c", f"{binds} && exec {kubelet}"]
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        wait_for(self._healthy, f"kubelet to be healthy (its log: {self.log})", timeout=60,
                 interval=0.2)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"kubelet exited {self.proc.returncode}:\n{self.log_tail()}")
        return http_get(self.node.path, "127.0.0.1", 10248, "/healthz") == "ok"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            # Its mount namespace goes with it; a child left in its session would keep it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        for name, value in self._sysctls.items():
            _write_sysctl(name, value)

    def has_taken_over(self, pods: list[str]) -> bool:
        """Whether this run of kubelet has picked up each of these pods from its manifest."""
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            lines = [line for line in log.read().decode(errors="replace").splitlines()
                     if '"SyncLoop ADD"' in line]
        return all(any(f"/{pod}\"" in line for line in lines) for pod in pods)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def add_manifest(self, name: str, pod: dict[str, Any]) -> float:
        """Write a static pod's manifest (whole: kubelet reads half-written files); its time."""
        tmp = self.manifests / f".{name}.json"
        tmp.write_text(json.dumps(pod))
        tmp.rename(self.manifests / f"{name}.json")
        return time.monotonic()

    def remove_manifest(self, name: str) -> None:
        (self.manifests / f"{name}.json").unlink()


def static_pod(name: str, image: str, command: list[str], host_port: int | None = None,
               container_port: int = 8080) -> dict[str, Any]:
    """A static pod of one container; with `host_port`, that port forwards to `container_port`."""
    container: dict[str, Any] = {
        "name": "main", "image": image, "imagePullPolicy": "Never", "command": command,
    }
    if host_port is not None:
        container["ports"] = [{"containerPort": container_port, "hostPort": host_port,
                               "protocol": "TCP"}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1,
                 "restartPolicy": "Always"},
    }


def http_get(netns: str, host: str, port: int, path: str = "/") -> str | None:
    """The body of a GET from inside `netns`, or None when nothing answers."""
    with inside(netns):
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                conn.settimeout(5)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
        except OSError:
            return None
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return body.strip() if " 200 " in head.split("\r\n", 1)[0] else None


def _read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys", name)
    if path.read_text().strip() != value:
        path.write_text(value)
