"""`ctr run --cni`: containerd's own client runs the installed plugin through go-cni.

ctr reads its CNI config from /etc/cni/net.d (first file) and its plugins from
/opt/cni/bin, so it runs in a private mount namespace with the test's dirs
bind-mounted over those paths; the machine's own dirs are not touched.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path

import pytest

from .containerd import Containerd
from .helpers import agent_env, conflist, guarded_host, require, reservations, run, write_json

BLOCK = "10.253.64.64/26"
NETWORK = "calico-py-ctr"
CTR_NAMESPACE = "calico-py-e2e"
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_BIN_DIR = "/opt/cni/bin"


def _bind_over(source: Path, target: str) -> list[str]:
    """Shell commands that make `target` show `source`, inside the private namespace."""
    existing = Path(target)
    while not existing.exists():
        existing = existing.parent
    commands = []
    if str(existing) != target:
        # Nothing there yet (e.g. no /opt/cni): a tmpfs over the nearest
        # existing directory, private to this namespace, holds the mount point.
        if str(existing) in ("/", "/etc", "/usr", "/run", "/var"):
            pytest.fail(f"{target} is missing and its parent {existing} cannot be covered")
        commands += [f"mount -t tmpfs tmpfs {shlex.quote(str(existing))}",
                     f"mkdir -p {shlex.quote(target)}"]
    commands.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    return commands


def test_ctr_run_cni(
    containerd: Containerd, runtime_bin_dir: Path, rootfs: Path, tmp_path: Path,
) -> None:
    conf_dir = tmp_path / "net.d"
    data_dir = tmp_path / "ipam"
    write_json(conf_dir / "10-calico-py.conflist",
               conflist(NETWORK, BLOCK, data_dir, tmp_path / "cni.log"))
    container = "calico-py-ctr-e2e"
    ctr = [containerd.ctr_path, "--address", str(containerd.socket), "--namespace", CTR_NAMESPACE]
    inner = "ip -4 addr show dev eth0; echo ---; ip -4 route show"
    script = " && ".join([
        *_bind_over(conf_dir, CNI_CONF_DIR),
        *_bind_over(runtime_bin_dir, CNI_BIN_DIR),
        shlex.join([*ctr, "run", "--rm", "--cni", "--rootfs", str(rootfs), container,
                    "/bin/sh", "-c", inner]),
    ])
    with guarded_host(BLOCK, NETWORK) as host:
        try:
            unshare = require("unshare", "util-linux")
            proc = run([unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                       check=False, timeout=120, env=agent_env(None))
            assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{_log(tmp_path)}"
            addrs, routes = proc.stdout.split("---")
            inet = re.findall(r"inet (\S+)", addrs)
            assert len(inet) == 1, addrs
            address = ipaddress.ip_interface(inet[0])
            assert address.network.prefixlen == 32 and address.ip in ipaddress.ip_network(BLOCK)
            assert re.search(r"^default via 169\.254\.1\.1 dev eth0", routes, re.M), routes
            assert re.search(r"^169\.254\.1\.1 dev eth0 .*scope link", routes, re.M), routes
            # --rm sent DEL (with an empty CNI_NETNS): nothing is left.
            assert reservations(data_dir, NETWORK) == []
            assert host.leftovers() == []
        finally:
            containerd.ctr("tasks", "kill", "-s", "KILL", container, namespace=CTR_NAMESPACE,
                           check=False)
            containerd.ctr("containers", "rm", container, namespace=CTR_NAMESPACE, check=False)


def _log(tmp_path: Path) -> str:
    log = tmp_path / "cni.log"
    return "plugin log:\n" + log.read_text()[-4000:] if log.exists() else ""
