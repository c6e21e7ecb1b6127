"""The invariant checker itself: each kind of broken node is reported, a sound one is not.

The node and pod are wired by hand (`ip`), the store written by hand, so the
checker is shown to see what the attack tests rely on it to see.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.attack.invariants import Attachment, Snapshot, leftovers, state_of, violations
from tests.attack.scrub import scrub
from tests.cni_calls import BLOCK_V4
from tests.netns import Node

pytestmark = pytest.mark.netns


def _ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)


def _record(store: Path, address: str, who: Attachment) -> None:
    text = json.dumps({"containerID": who.container_id, "ifname": who.ifname, "netns": who.netns,
                       "created": 1.0})
    (store / address).write_text(text + "\n")


def test_the_checker_sees_each_kind_of_damage(bare_node: Node, tmp_path: Path) -> None:
    bare_node.add_pod()
    pod = bare_node.pods[0]
    who = Attachment("checked1", pod)
    other = Attachment("checked2", pod)
    store = tmp_path / "testnet"
    store.mkdir()
    (store / "lock").touch()
    _ip(bare_node.name, "link", "add", who.host_veth, "type", "veth", "peer", "name", "eth0",
        "netns", pod)
    _ip(bare_node.name, "link", "set", who.host_veth, "up")
    _ip(pod, "addr", "add", "10.252.7.5/32", "dev", "eth0")
    _ip(bare_node.name, "route", "add", "10.252.7.5", "dev", who.host_veth, "scope", "link")

    def look() -> tuple[list[str], list[str], str]:
        snap = Snapshot.take(store, bare_node.name, [pod], BLOCK_V4)
        return violations(snap, {pod: who}), leftovers(snap), state_of(snap, who)[0]

    _record(store, "10.252.7.5", who)
    found, left, state = look()
    assert (found, state) == ([], "attached")
    assert len(left) == 4  # the record, the veth, its route, the pod's eth0

    (store / "10.252.7.5").unlink()
    found, _, state = look()
    assert any("has 10.252.7.5 on eth0, which the store does not reserve" in v for v in found)
    assert any("node routes 10.252.7.5 dev" in v for v in found)
    assert state.startswith("half")

    _record(store, "10.252.7.5", other)
    found, _, _ = look()
    assert any("reserves it for checked2/eth0" in v for v in found), found

    _record(store, "10.252.7.5", who)
    _record(store, "10.252.7.6", who)
    (store / "10.252.7.7").write_text('{"containerID": "chec')
    (store / ".tmp-10.252.7.8-0a0b0c0d").write_text("")
    found, left, _ = look()
    assert any("holds 2 addresses" in v for v in found), found
    assert any("torn record 10.252.7.7" in v for v in found), found
    assert any("stray temp file .tmp-10.252.7.8" in v for v in left), left

    scrub(bare_node.name, [pod], store)
    found, left, state = look()
    assert (found, left, state) == ([], [], "gone")
    assert (store / "lock").exists()
