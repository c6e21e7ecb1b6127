import socket
import struct

import pytest

from cni_calico_py.agent import framing
from cni_calico_py.agent.stats import Stats, percentiles


def test_frames_survive_being_split():
    left, right = socket.socketpair()
    with left, right:
        payload = {"op": "cni", "stdin": "x" * 200_000}
        framing.send(left, payload)
        assert framing.receive(right) == payload


@pytest.mark.parametrize("raw", [struct.pack("!I", framing.MAX_FRAME + 1), struct.pack("!I", 3) + b"{x}"])
def test_oversized_or_broken_frames_are_refused(raw):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        with pytest.raises(framing.FrameError):
            framing.receive(right)


def test_a_peer_that_leaves_mid_frame():
    left, right = socket.socketpair()
    with right:
        left.sendall(struct.pack("!I", 50) + b"{")
        left.close()
        with pytest.raises(framing.FrameError, match="closed"):
            framing.receive(right)


def test_stats_percentiles():
    stats = Stats()
    for millis in range(1, 101):
        stats.record("ADD", 0 if millis % 10 else 1, float(millis))
    snapshot = stats.snapshot(pid=1)
    assert snapshot["served"] == {"ADD": 100} and snapshot["failed"] == {"ADD": 10}
    assert snapshot["latency_ms"]["ADD"] == {"p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 100.0}
    assert percentiles([]) == {}
