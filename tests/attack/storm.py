"""A client of the node agent that leaves early, run as its own process inside the node.

`python -m tests.attack.storm SOCKET COUNT SECONDS OFFSET` sends COUNT
requests, one connection each, cycling through the ways a caller can go away
(KINDS), and prints a JSON summary: for each kind, how many requests ended
which way. It stops early after SECONDS.

It is a process of its own, started in the node's network namespace, because
a worker says `ready` only to a caller in its own namespace and asks the
kernel which one that is (/proc/<pid>/ns/net, the namespace of the caller's
main thread): a thread of the test that entered the node would still be seen
in the test's namespace.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import Counter

from cni_calico_py.agent import framing

# status: the frame, then close (the agent's answer meets a closed socket).
# cni: a CNI request frame, then close (the worker's `ready` does).
# cni-ready: close right after reading `ready`, without the go byte (nothing runs).
# cni-go: VERSION, which changes nothing on the node, closed right after the go byte
#   (the worker's result does).
KINDS = ("status", "cni", "cni-ready", "cni-go")
SENT = "sent"


def frame(kind: str, index: int) -> bytes:
    if kind == "status":
        return framing.encode({"op": "status"})
    verb = "VERSION" if kind == "cni-go" else "ADD"
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": f"storm{index}", "CNI_NETNS": "/nonexistent",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent", "CNI_ARGS": ""}
    conf = json.dumps({"cniVersion": "1.0.0", "name": "storm", "type": "calico-py",
                       "ipam": {"type": "calico-py-ipam", "subnet": "10.252.7.0/26"}})
    return framing.encode({"op": "cni", "program": "calico-py", "env": env, "stdin": conf})


def one(path: str, kind: str, data: bytes) -> str:
    """One request that leaves as `kind` says; SENT, or what went wrong on this side."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(path)
        sock.sendall(data)
        if kind in ("status", "cni"):
            return SENT
        answer = sock.recv(1)
        if answer != framing.READY:
            return f"answered {answer!r} instead of ready"
        if kind == "cni-go":
            sock.sendall(framing.GO)
        return SENT
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    finally:
        sock.close()


def storm(path: str, count: int, seconds: float, offset: int) -> dict[str, dict[str, int]]:
    deadline = time.monotonic() + seconds
    ended: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for index in range(count):
        if time.monotonic() > deadline:
            break
        kind = KINDS[(index + offset) % len(KINDS)]
        ended[kind][one(path, kind, frame(kind, offset * count + index))] += 1
    return {kind: dict(outcomes) for kind, outcomes in ended.items()}


if __name__ == "__main__":
    socket_path, requests, limit, first = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(storm(socket_path, requests, limit, first)))
