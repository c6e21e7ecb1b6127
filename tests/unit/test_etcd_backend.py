"""The etcd backend's encoding and watch stream, and the view of the cluster a node keeps."""

from __future__ import annotations

import base64
import json
from ipaddress import IPv4Network

import pytest

from cni_calico_py.datastore.errors import DatastoreUnavailable, ResyncNeeded
from cni_calico_py.datastore.etcd import EtcdBackend
from cni_calico_py.datastore.etcd_codec import decode, range_end
from cni_calico_py.datastore.etcd_watch import EtcdWatch
from cni_calico_py.datastore.model import (
    BLOCK,
    LIVENESS,
    NODE,
    Block,
    Key,
    Listing,
    Liveness,
    NodeRecord,
    WatchEvent,
    cidr_from_name,
    cidr_name,
)
from cni_calico_py.datastore.view import Cluster

PREFIX = "/calico-py/v1"
BACKEND = EtcdBackend(["http://127.0.0.1:1"], PREFIX, 1.0)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def response(*events: dict[str, object]) -> bytes:
    return json.dumps({"result": {"header": {"revision": "9"}, "events": list(events)}}).encode() + b"\n"


def put(key: str, value: str, revision: int) -> dict[str, object]:
    return {"kv": {"key": b64(f"{PREFIX}/{key}"), "value": b64(value), "mod_revision": str(revision)}}


def test_events_of_a_stream_split_anywhere() -> None:
    watch = EtcdWatch(BACKEND.endpoints, 1.0, BACKEND.layout, BLOCK, 5)
    created = json.dumps({"result": {"header": {}, "created": True}}).encode() + b"\n"
    stream = created + response(put("blocks/192.168.0.0-26", '{"node": "n1"}', 5)) + response(
        {"type": "DELETE", "kv": {"key": b64(f"{PREFIX}/blocks/192.168.0.64-26"), "mod_revision": "6"}})
    chunks = [stream[i:i + 7] for i in range(0, len(stream), 7)]
    assert list(watch._batches(chunks)) == [
        [WatchEvent(Key(BLOCK, "192-168-0-0-26"), Block(IPv4Network("192.168.0.0/26"), "host:n1"), "5")],
        [WatchEvent(Key(BLOCK, "192-168-0-64-26"), None, "6")]]


@pytest.mark.parametrize(("message", "error", "words"), [
    ({"result": {"canceled": True, "compact_revision": "40"}}, ResyncNeeded, "revision 40"),
    ({"result": {"canceled": True, "cancel_reason": "permission denied"}}, ResyncNeeded,
     "permission denied"),
    ({"error": {"message": "etcdserver: no leader"}}, DatastoreUnavailable, "no leader"),
])
def test_a_compacted_or_cancelled_watch_ends(message: dict[str, object], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        watch = EtcdWatch(BACKEND.endpoints, 1.0, BACKEND.layout, NODE, 1)
        list(watch._batches([json.dumps(message).encode() + b"\n"]))


def test_blocks_keep_their_keys_from_before_affinities() -> None:
    """A node upgraded in place reads the blocks it wrote before: same key, older value."""
    cidr = IPv4Network("10.88.0.64/26")
    assert BACKEND.layout.path(Key(BLOCK, cidr_name(cidr))) == f"{PREFIX}/blocks/10.88.0.64-26"
    assert decode(BLOCK, "10-88-0-64-26", b'{"node": "n1", "claimed": 1.5}') == Block(cidr, "host:n1")
    assert cidr_from_name("n-1-10-88-0-64-26") == cidr and cidr_from_name("junk") is None
    assert decode(BLOCK, "10-88-0-64-26", b"not json") is None


def test_the_view_applies_changes_and_says_when_something_changed() -> None:
    record = NodeRecord("n1", "10.99.0.11/24", 64512, "66:00:00:00:00:01", "192.168.0.0", "224.0.0.1")
    view = Cluster()
    view.take(NODE, Listing([], "3"))
    block = Block(IPv4Network("192.168.0.0/26"), "host:n1")
    assert view.apply([WatchEvent(record.key, record, "4"), WatchEvent(block.key, block, "5")])
    assert not view.apply([WatchEvent(block.key, block, "6")])  # unchanged
    assert view.apply([WatchEvent(Key(LIVENESS, "n1"), Liveness("n1", 10), "7")])
    assert not view.apply([WatchEvent(Key(LIVENESS, "n1"), Liveness("n1", 10), "8")])  # a renewal
    assert view.node_list() == [record] and view.alive() == {"n1"}
    assert view.owners() == {IPv4Network("192.168.0.0/26"): "n1"}
    assert view.apply([WatchEvent(Key(LIVENESS, "n1"), None, "9")]) and view.alive() == set()


def test_a_lease_renewed_too_long_ago_is_not_alive() -> None:
    live = Liveness("n1", 10, renewed=100.0)
    assert live.alive(105.0) and not live.alive(111.0) and live.expires() == 110.0


def test_range_end_covers_the_prefix() -> None:
    assert range_end(PREFIX + "/") == "/calico-py/v10"
