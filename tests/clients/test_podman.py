"""podman with its CNI backend: two containers on the installed plugin ping each other.

Podman makes the containers' namespaces and runs the plugin in the machine's
namespace; `guarded_host` removes anything left and fails the test if DEL
left it. The containers run detached and are stopped with `podman stop`: an
attached `podman run` waits 20 s for conmon here before it returns.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from .helpers import conflist, guarded_host, ping, reservations, write_json
from .podman import Podman

BLOCK = "10.253.64.128/26"
NETWORK = "calico-py-podman"
NAMES = ("calico-py-a", "calico-py-b")


def _eth0(podman: Podman, name: str) -> ipaddress.IPv4Interface:
    out = podman("exec", name, "ip", "-4", "addr", "show", "dev", "eth0").stdout
    (inet,) = re.findall(r"inet (\S+)", out)
    return ipaddress.IPv4Interface(inet)


def test_two_containers_ping(runtime_bin_dir: Path, rootfs: Path, tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    data_dir = tmp_path / "ipam"
    log = tmp_path / "cni.log"
    write_json(conf_dir / f"{NETWORK}.conflist", conflist(NETWORK, BLOCK, data_dir, log))
    podman = Podman(tmp_path / "podman", runtime_bin_dir, conf_dir, NETWORK)
    with guarded_host(BLOCK, NETWORK) as host:
        try:
            for name in NAMES:
                # Every option before --rootfs: what follows is the command.
                podman("run", "--detach", "--network", NETWORK, "--name", name,
                       "--cap-add", "NET_RAW", "--rootfs", str(rootfs), "/bin/sleep", "600")
            addresses = {name: _eth0(podman, name) for name in NAMES}
            block = ipaddress.ip_network(BLOCK)
            for address in addresses.values():
                assert address.network.prefixlen == 32 and address.ip in block, addresses
            a, b = (str(addresses[n].ip) for n in NAMES)
            assert a != b
            routes = podman("exec", NAMES[0], "ip", "-4", "route", "show").stdout
            assert re.search(r"^default via 169\.254\.1\.1 dev eth0", routes, re.M), routes
            assert len(host.new_veths()) == 2

            podman("exec", NAMES[0], "ping", "-c", "2", "-W", "2", b)
            podman("exec", NAMES[1], "ping", "-c", "2", "-W", "2", a)
            ping(a)  # from the machine to its own container

            podman("stop", "--time", "0", *NAMES)
            podman("rm", *NAMES)
            assert reservations(data_dir, NETWORK) == []
            assert host.leftovers() == []
        except BaseException:
            if log.exists():
                print("plugin log:\n" + "\n".join(log.read_text().splitlines()[-60:]))
            raise
        finally:
            podman.cleanup()
