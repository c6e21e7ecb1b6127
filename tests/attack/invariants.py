"""What must hold of a node, its pods and the address store, whatever was killed when.

`Snapshot.take` reads the store directory (one record file per reserved
address), the node's links and routes and every pod's addresses (`ip -j`);
the functions below return what is wrong with it, one sentence each. An
empty list is a sound node. Take a snapshot only while nothing runs: a
request caught half-way looks like a violation.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni_calico_py.dataplane.naming import host_veth_name, spare_host_veth_name

TEMP_PREFIX = ".tmp-"
NOT_RECORDS = ("lock", "last_reserved_ip.")
VETH_PREFIX = "cali"
NETWORK = "testnet"  # tests.cni_calls.netconf's
POD_NAMESPACE = "attack"


@dataclass(frozen=True)
class Attachment:
    """One (container ID, ifname) in one pod netns, as the runtime names it."""

    container_id: str
    pod: str  # the pod's netns name under /var/run/netns
    ifname: str = "eth0"
    # The Kubernetes pod it is a sandbox of (K8S_POD_NAMESPACE=attack, K8S_POD_NAME), if any:
    # sandboxes of one pod share the pod's veth name.
    pod_name: str = ""

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.pod}"

    @property
    def cni_args(self) -> str:
        return f"K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={self.pod_name}" \
            if self.pod_name else ""

    @property
    def host_veth(self) -> str:
        """The pod's name for the host veth (without pod arguments: the container ID's)."""
        if self.pod_name:
            return host_veth_name(VETH_PREFIX, POD_NAMESPACE, self.pod_name, self.container_id)
        return host_veth_name(VETH_PREFIX, "", "", self.container_id)

    @property
    def host_veths(self) -> tuple[str, str]:
        """The pod's name, and the attachment's own that it takes when another holds that."""
        return self.host_veth, spare_host_veth_name(VETH_PREFIX, NETWORK, self.container_id,
                                                     self.ifname)

    def __str__(self) -> str:
        return f"{self.container_id}/{self.ifname}"


@dataclass(frozen=True)
class Record:
    container_id: str
    ifname: str
    netns: str


@dataclass
class Snapshot:
    block: ipaddress.IPv4Network
    records: dict[str, Record] = field(default_factory=dict)  # address -> who holds it
    problems: list[str] = field(default_factory=list)  # unreadable records and the like
    temp_files: list[str] = field(default_factory=list)
    node_links: list[str] = field(default_factory=list)  # host veths (cali*)
    node_routes: dict[str, str] = field(default_factory=dict)  # pod address -> dev of its /32 route
    pod_links: dict[str, list[str]] = field(default_factory=dict)  # pod -> interfaces other than lo
    pod_addresses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # pod -> (ifname, addr)

    @classmethod
    def take(cls, store: Path, node: str, pods: Iterable[str], block: str) -> Snapshot:
        snap = cls(ipaddress.IPv4Network(block))
        snap._read_store(store)
        for link in ip_json(node, "link", "show"):
            if str(link.get("ifname", "")).startswith(VETH_PREFIX):
                snap.node_links.append(str(link["ifname"]))
        for route in ip_json(node, "-4", "route", "show"):
            dst = str(route.get("dst", ""))
            if "/" not in dst and snap.in_block(dst):
                snap.node_routes[dst] = str(route.get("dev", ""))
        for pod in pods:
            snap.pod_links[pod] = []
            snap.pod_addresses[pod] = []
            for link in ip_json(pod, "addr", "show"):
                name = str(link.get("ifname", ""))
                if name == "lo":
                    continue
                snap.pod_links[pod].append(name)
                for info in link.get("addr_info", []):
                    if snap.in_block(str(info.get("local", ""))):
                        snap.pod_addresses[pod].append((name, str(info["local"])))
        return snap

    def in_block(self, text: str) -> bool:
        try:
            return ipaddress.ip_address(text) in self.block
        except ValueError:
            return False

    def held_by(self, who: Attachment) -> list[str]:
        return sorted(a for a, r in self.records.items()
                      if (r.container_id, r.ifname) == (who.container_id, who.ifname))

    def _read_store(self, store: Path) -> None:
        try:
            names = sorted(os.listdir(store))
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(TEMP_PREFIX):
                self.temp_files.append(name)
                continue
            if name.startswith(NOT_RECORDS):
                continue
            try:
                address = ipaddress.ip_address(name)
            except ValueError:
                self.problems.append(f"store: unexpected file {name!r}")
                continue
            if str(address) != name:
                self.problems.append(f"store: record {name!r} is a second name for {address}")
                continue
            record = _parse_record(store / name)
            if isinstance(record, str):
                self.problems.append(f"store: torn record {name}: {record}")
            else:
                self.records[name] = record


def _parse_record(path: Path) -> Record | str:
    try:
        data = json.loads(path.read_bytes())
        record = Record(data["containerID"], data["ifname"], data.get("netns", ""))
    except FileNotFoundError:
        return "vanished while read"
    except (ValueError, KeyError, TypeError) as err:
        return f"{type(err).__name__}: {err}"
    if not (isinstance(record.container_id, str) and record.container_id
            and isinstance(record.ifname, str) and record.ifname):
        return f"fields of the wrong type: {data!r}"
    return record


def ip_json(netns: str, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"ip -n {netns} -j {' '.join(args)}: {proc.stderr.strip()}")
    return list(json.loads(proc.stdout)) if proc.stdout.strip() else []


def violations(snap: Snapshot, owners: Mapping[str, Attachment]) -> list[str]:
    """What must hold at every quiet moment. `owners`: pod netns name -> its attachment now."""
    found = list(snap.problems)
    by_owner: dict[tuple[str, str], list[str]] = {}
    for address, record in snap.records.items():
        by_owner.setdefault((record.container_id, record.ifname), []).append(address)
    for (cid, ifname), addresses in sorted(by_owner.items()):
        if len(addresses) > 1:
            found.append(f"{cid}/{ifname} holds {len(addresses)} addresses in block {snap.block}: "
                         f"{', '.join(sorted(addresses))}")
    for pod, pairs in snap.pod_addresses.items():
        who = owners.get(pod)
        for ifname, address in pairs:
            holder = snap.records.get(address)
            where = f"pod {pod} ({who}) has {address} on {ifname}"
            if holder is None:
                found.append(f"{where}, which the store does not reserve")
            elif who is None or (holder.container_id, holder.ifname) != (who.container_id, ifname):
                found.append(f"{where}, but the store reserves it for "
                             f"{holder.container_id}/{holder.ifname}")
    for address, dev in sorted(snap.node_routes.items()):
        if not dev.startswith(VETH_PREFIX):
            continue
        routed = snap.records.get(address)
        if routed is None:
            found.append(f"node routes {address} dev {dev}, an address the store does not reserve")
            continue
        owner = next((who for who in owners.values()
                      if (who.container_id, who.ifname) == (routed.container_id, routed.ifname)),
                     Attachment(routed.container_id, "", routed.ifname))
        if dev not in owner.host_veths:
            found.append(f"node routes {address} dev {dev}, but the store reserves it for "
                         f"{routed.container_id}/{routed.ifname}, whose veth is "
                         f"{' or '.join(owner.host_veths)}")
    return found


def leftovers(snap: Snapshot) -> list[str]:
    """After every attachment's DEL succeeded: nothing of any of them may remain."""
    found = [f"record {a} ({r.container_id}/{r.ifname}) left after its DEL succeeded"
             for a, r in sorted(snap.records.items())]
    found += [f"stray temp file {name} in the store after later lock holders ran"
              for name in snap.temp_files]
    found += [f"host veth {name} left in the node" for name in sorted(snap.node_links)]
    found += [f"node route {a}/32 dev {dev} left" for a, dev in sorted(snap.node_routes.items())]
    found += [f"pod {pod} still has {', '.join(links)}" for pod, links in sorted(snap.pod_links.items())
              if links]
    return found


def state_of(snap: Snapshot, who: Attachment) -> tuple[str, str | None]:
    """("attached", address), ("gone", None), or ("half: <what exists>", None)."""
    held = snap.held_by(who)
    links = snap.pod_links.get(who.pod, [])
    on_ifname = sorted(a for i, a in snap.pod_addresses.get(who.pod, []) if i == who.ifname)
    # Which of its two names the attachment's veth has is told by its routes: the
    # other name may be another sandbox's of the same pod.
    routed = sorted(a for a, dev in snap.node_routes.items() if dev in who.host_veths and a in held)
    veth = next((dev for a, dev in snap.node_routes.items() if a in held and dev in who.host_veths),
                None)
    if len(held) == 1 and on_ifname == held and veth and routed == held and links == [who.ifname]:
        return "attached", held[0]
    # Names only it can have: both without pod arguments, else the spare (the pod's name may
    # be another sandbox's).
    own_names = who.host_veths[1:] if who.pod_name else who.host_veths
    if not held and not links and not routed and not set(own_names) & set(snap.node_links):
        return "gone", None
    return (f"half: reserved {held or 'nothing'}; pod interfaces {links or 'none'}, "
            f"{who.ifname} addresses {on_ifname or 'none'}; host veth {veth or 'none routing it'}; "
            f"node routes via {' or '.join(who.host_veths)} {routed or 'none'}"), None


def wired_as_answered(snap: Snapshot, who: Attachment, address: str) -> list[str]:
    """A successful ADD's answer must hold: the pod is fully attached with the address it got."""
    state, held = state_of(snap, who)
    if state == "attached" and held == address:
        return []
    if state == "attached":
        return [f"{who}: ADD answered {address}, but the attachment is wired with {held}"]
    return [f"{who}: ADD answered {address}, but the attachment is {state}"]
