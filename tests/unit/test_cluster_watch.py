"""The etcd watch stream as the node daemon reads it, and the view it keeps."""

from __future__ import annotations

import base64
import json
from ipaddress import IPv4Network

import pytest

from cni_calico_py.cluster.datastore import Event, NodeRecord, View, range_end
from cni_calico_py.cluster.watch import WatchEnded, parse_stream

PREFIX = "/calico-py/v1/"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def response(*events: dict[str, object]) -> bytes:
    return json.dumps({"result": {"header": {"revision": "9"}, "events": list(events)}}).encode() + b"\n"


def put(key: str, value: str, revision: int) -> dict[str, object]:
    return {"kv": {"key": b64(PREFIX + key), "value": b64(value), "mod_revision": str(revision)}}


def test_events_of_a_stream_split_anywhere() -> None:
    created = json.dumps({"result": {"header": {}, "created": True}}).encode() + b"\n"
    stream = created + response(put("blocks/192.168.0.0-26", '{"node": "n1"}', 5)) + response(
        {"type": "DELETE", "kv": {"key": b64(PREFIX + "alive/n2"), "mod_revision": "6"}})
    chunks = [stream[i:i + 7] for i in range(0, len(stream), 7)]
    assert list(parse_stream(chunks, PREFIX)) == [
        [Event("blocks/192.168.0.0-26", b'{"node": "n1"}', 5)], [Event("alive/n2", None, 6)]]


@pytest.mark.parametrize(("message", "words"), [
    ({"result": {"canceled": True, "compact_revision": "40"}}, "history compacted to revision 40"),
    ({"result": {"canceled": True, "cancel_reason": "permission denied"}}, "permission denied"),
    ({"error": {"message": "etcdserver: no leader"}}, "no leader"),
])
def test_a_compacted_or_cancelled_watch_ends(message: dict[str, object], words: str) -> None:
    with pytest.raises(WatchEnded, match=words):
        list(parse_stream([json.dumps(message).encode() + b"\n"], PREFIX))


def test_the_view_takes_only_events_newer_than_its_snapshot() -> None:
    record = NodeRecord("n1", "10.99.0.11/24", 64512, "66:00:00:00:00:01", "192.168.0.0", "224.0.0.1")
    view = View(10, {"nodes/n1": record.to_json().encode(), "alive/n1": b"{}"})
    assert not view.apply([Event("alive/n1", None, 10)])  # already in the snapshot
    assert view.apply([Event("blocks/192.168.0.0-26", b'{"node": "n1"}', 11)])
    assert not view.apply([Event("blocks/192.168.0.0-26", b'{"node": "n1"}', 12)])  # unchanged
    assert view.nodes() == [record] and view.alive() == {"n1"}
    assert view.owners() == {IPv4Network("192.168.0.0/26"): "n1"}
    assert view.apply([Event("alive/n1", None, 13)]) and view.alive() == set()


def test_range_end_covers_the_prefix() -> None:
    assert range_end(PREFIX) == "/calico-py/v10"
