"""One Kubernetes node of the test cluster: containerd, kubelet and kube-proxy in a
network namespace and a mount namespace of the node's own.

The mount namespace makes the node look like a machine of its own to what runs
there, the plugin's DaemonSet included: /run is a fresh tmpfs, and /var/lib,
/var/log, /opt and /etc/cni are the node's directories, so hostPath volumes,
/opt/cni/bin, /etc/cni/net.d, /var/lib/cni and the runtime's /var/run/netns are
the node's own. Its mounts are shared inside it (and slaves of the machine's),
so a pod network namespace that containerd mounts after the DaemonSet's pod
started reaches that pod's HostToContainer volume.

A holder process (`sleep`) keeps the mount namespace; every program of the node
is started with nsenter into it and the node's network namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.clients.containerd import CONFIG as CONTAINERD_CONFIG
from tests.clients.containerd import _remove_cgroups
from tests.clients.helpers import require
from tests.clients.kubelet.kubelet import COMMON_CONFIG
from tests.netns import inside, stop_process, wait_for

# What kubelet changes on the machine as a whole, restored when the last one stops.
GLOBAL_SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory")
# The node's own directories, bind-mounted over the machine's in its mount namespace.
PRIVATE_DIRS = {"/var/lib": "var-lib", "/var/log": "var-log", "/opt": "opt", "/etc/cni": "etc-cni"}
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
K8S_NAMESPACE = "k8s.io"
# Debian's reference plugins every node has beside the plugin, as a kubeadm node has
# kubernetes-cni: containerd's CRI needs loopback, the conflist chains portmap.
REFERENCE_PLUGINS = ("loopback", "portmap")
REFERENCE_DIR = Path("/usr/lib/cni")

# The cluster's DNS Service (tests/k8s/coredns.yaml), where a cluster runs one.
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
# Registered with the API server: no static pods; no resolv.conf of the node's (nothing
# outside resolves here); pods ask the cluster's DNS.
KUBELET_CONFIG = COMMON_CONFIG + f"""\
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
resolvConf: ""
clusterDNS: [{CLUSTER_DNS}]
clusterDomain: {CLUSTER_DOMAIN}
maxPods: 110
"""

KUBE_PROXY_CONFIG = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
bindAddress: {address}
clusterCIDR: {cluster_cidr}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  # 0: leave the machine-wide conntrack table and timeouts as they are.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


def mount_script(base: Path) -> str:
    """The node's mounts, made inside its fresh mount namespace before anything runs there."""
    lines = ["set -e", "mount -t tmpfs -o mode=755 node-run /run",
             "mkdir -p /run/lock /run/netns"]
    lines += [f"mount --bind {base / private} {target}" for target, private in PRIVATE_DIRS.items()]
    lines += ["mount --make-rshared /"]
    return "; ".join(lines)


@dataclass
class KubeNode:
    """A node's processes; every path is under `base`, seen from the machine."""

    name: str
    netns: str            # the network namespace's path
    address: str          # the node's underlay address
    base: Path
    kubeconfig: Path      # the kubelet's: user system:node:<name>
    proxy_kubeconfig: Path
    cluster_cidr: str
    sandbox_image: str
    holder: subprocess.Popen[bytes] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- the mount namespace --------------------------------------------------
    def start_namespace(self) -> None:
        for private in PRIVATE_DIRS.values():
            (self.base / private).mkdir(parents=True, exist_ok=True)
        for sub in ("opt/cni/bin", "etc-cni/net.d", "var-lib/kubelet", "var-log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for plugin in REFERENCE_PLUGINS:
            source = REFERENCE_DIR / plugin
            if not source.exists():
                raise AssertionError(f"{source} is missing: apt-get install containernetworking-plugins")
            shutil.copy2(source, self.base / "opt/cni/bin" / plugin)
        ready = self.base / "mounts-ready"
        ready.unlink(missing_ok=True)
        script = f"{mount_script(self.base)}; touch {ready}; exec sleep infinity"
        self.holder = subprocess.Popen(
            [require("nsenter", "util-linux"), f"--net={self.netns}",
             require("unshare", "util-linux"), "--mount", "--propagation", "slave",
             "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(self.base / "mounts.log").open("ab"), start_new_session=True)
        wait_for(lambda: ready.exists() or self.holder is None or self.holder.poll() is not None,
                 f"node {self.name}'s mounts", timeout=20)
        if not ready.exists():
            raise AssertionError(f"node {self.name}'s mounts failed: "
                                 f"{(self.base / 'mounts.log').read_text(errors='replace')}")

    @property
    def mount_ns(self) -> str:
        assert self.holder is not None
        return f"/proc/{self.holder.pid}/ns/mnt"

    def enter(self) -> list[str]:
        """The command prefix that runs a program on the node (its mounts and network)."""
        return [require("nsenter", "util-linux"), f"--mount={self.mount_ns}", f"--net={self.netns}"]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.enter(), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"on {self.name}: {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()[-2000:]}")
        return proc

    def host_path(self, path: str) -> Path:
        """Where a path of the node's is, seen from the machine (through the holder's root)."""
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root{path}")

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.base / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [*self.enter(), *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env={**os.environ, **(env or {})})

    def _alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{name} on {self.name} exited {proc.returncode}:\n"
                                 f"{self.log_tail(name)}")
        return proc is not None

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.base / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- containerd -----------------------------------------------------------
    def start_containerd(self, env: dict[str, str] | None = None) -> None:
        """containerd; `env` is what the CNI plugins it runs get on top of this process's."""
        config = self.base / "containerd.toml"
        config.write_text(CONTAINERD_CONFIG.format(
            root="/var/lib/containerd", state="/run/containerd", socket=CONTAINERD_SOCKET,
            sandbox_image=self.sandbox_image, cni_bin_dir="/opt/cni/bin",
            cni_conf_dir="/etc/cni/net.d", netns_under_state="false"))
        self._start("containerd", [require("containerd", "containerd"), "--config", str(config)],
                    env)
        wait_for(lambda: self._alive("containerd") and self.ctr("version", check=False).returncode == 0,
                 f"containerd on {self.name}", timeout=30, interval=0.2)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(require("ctr", "containerd"), "--address", CONTAINERD_SOCKET,
                        "--namespace", K8S_NAMESPACE, *args, check=check, timeout=timeout)

    def import_image(self, tar_path: Path) -> None:
        self.ctr("images", "import", str(tar_path))

    def restart_containerd(self, env: dict[str, str] | None = None) -> None:
        """The daemon alone: the shims, hence the pods, live on."""
        proc = self.processes.pop("containerd", None)
        if proc is not None:
            stop_process(proc)
        self.start_containerd(env)

    # -- kubelet --------------------------------------------------------------
    def start_kubelet(self, exe: Path) -> None:
        config = self.base / "kubelet.yaml"
        config.write_text(KUBELET_CONFIG.format(address=self.address))
        self._start("kubelet", [
            str(exe), f"--config={config}", f"--kubeconfig={self.kubeconfig}",
            f"--container-runtime-endpoint=unix://{CONTAINERD_SOCKET}",
            # Without them kubelet resolves its own hostname, which a node namespace cannot.
            f"--node-ip={self.address}", f"--hostname-override={self.name}", "--v=2"])
        wait_for(lambda: self._alive("kubelet") and self._healthz(10248) == "ok",
                 f"kubelet on {self.name} to be healthy", timeout=60, interval=0.2)

    def stop_kubelet(self) -> None:
        proc = self.processes.pop("kubelet", None)
        if proc is not None:
            stop_process(proc)

    # -- kube-proxy -----------------------------------------------------------
    def start_kube_proxy(self, exe: Path) -> None:
        config = self.base / "kube-proxy.yaml"
        config.write_text(KUBE_PROXY_CONFIG.format(
            kubeconfig=self.proxy_kubeconfig, name=self.name, address=self.address,
            cluster_cidr=self.cluster_cidr))
        self._start("kube-proxy", [str(exe), f"--config={config}", "--v=1"])
        wait_for(lambda: self._alive("kube-proxy") and self._healthz(10256) is not None,
                 f"kube-proxy on {self.name}", timeout=60, interval=0.2)

    def _healthz(self, port: int) -> str | None:
        with inside(self.netns):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    return str(answer.read().decode())
            except OSError:
                return None

    # -- what runs in pods ----------------------------------------------------
    def container_pid(self, container_id: str) -> int:
        """The host PID of a container's first process (to enter its network namespace)."""
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise AssertionError(f"no task {container_id} on {self.name}")

    # -- the end --------------------------------------------------------------
    def stop(self) -> None:
        """Everything of the node gone: its programs, its pods' processes and cgroups, its mounts."""
        for name in ("kubelet", "kube-proxy"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                stop_process(proc)
        containers: list[str] = []
        if "containerd" in self.processes and self.holder is not None:
            listed = self.ctr("containers", "ls", "-q", check=False, timeout=30)
            containers = listed.stdout.split() if listed.returncode == 0 else []
        proc = self.processes.pop("containerd", None)
        if proc is not None:
            stop_process(proc)
        _remove_cgroups(containers)
        if self.holder is not None:
            self._kill_mount_namespace()
            stop_process(self.holder)
            self.holder = None
        for proc in self.processes.values():
            stop_process(proc)
        self.processes.clear()

    def _kill_mount_namespace(self) -> None:
        """Kill every process left in the node's mount namespace (shims, above all)."""
        try:
            ns = os.stat(self.mount_ns).st_ino
        except OSError:
            return
        holder = self.holder.pid if self.holder is not None else -1
        for _ in range(3):
            pids = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) == holder:
                    continue
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{entry}/ns/mnt").st_ino == ns:
                        pids.append(int(entry))
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

