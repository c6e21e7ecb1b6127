"""What the cluster tests could leave on the machine, read before and after them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.netns import TEST_PREFIX

# The programs a test cluster runs; none may outlive it.
PROGRAMS = ("kubelet", "kube-proxy", "kube-apiserver", "kube-scheduler", "kube-controller",
            "etcd", "containerd", "containerd-shim", "bird", "calico-py", "httpd")


@dataclass(frozen=True)
class MachineState:
    processes: frozenset[tuple[int, str]]
    namespaces: frozenset[str]
    mounts: frozenset[str]
    cgroups: frozenset[str]
    iptables: frozenset[str]

    @classmethod
    def read(cls) -> MachineState:
        return cls(_processes(), _namespaces(), _mounts(), _cgroups(), _iptables())

    def new_since(self, before: MachineState) -> dict[str, list[str]]:
        """What is here now and was not `before`, by kind; empty when nothing is."""
        found = {
            "processes": sorted(f"{pid} {name}" for pid, name in self.processes - before.processes),
            "network namespaces": sorted(self.namespaces - before.namespaces),
            "mounts": sorted(self.mounts - before.mounts),
            "cgroups": sorted(self.cgroups - before.cgroups),
            "iptables rules": sorted(self.iptables - before.iptables),
        }
        return {kind: items for kind, items in found.items() if items}


def _processes() -> frozenset[tuple[int, str]]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith(PROGRAMS):
            found.add((int(entry), name))
    return frozenset(found)


def _namespaces() -> frozenset[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return frozenset(line.split()[0] for line in listed.splitlines()
                     if line.startswith(TEST_PREFIX))


def _mounts() -> frozenset[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return frozenset(" ".join(line.split()[:3]) for line in mounts)


def _cgroups() -> frozenset[str]:
    return frozenset(str(path) for path in Path("/sys/fs/cgroup").glob("*/k8s.io/*")
                     if path.is_dir())


def _iptables() -> frozenset[str]:
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return frozenset(line for line in saved.splitlines() if line.startswith(("-A", ":KUBE")))
