"""One ADD and DEL in two throwaway network namespaces, before the agent serves anyone.

pyroute2 compiles each message class's attribute table on first use, and
other caches fill on a first request too; done in the agent itself, every
forked worker inherits them instead of paying for them again (~13 ms an ADD).
The namespaces belong to two child processes that only hold them, so nothing
of the rehearsal ever touches the node's own namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..core import logs, versions
from ..core.constants import IPAM_PLUGIN_NAME
from ..dataplane.netns import CLONE_NEWNET, entered

# TEST-NET-2 style benchmark range: never routed, and only ever inside the rehearsal's namespaces.
_BLOCK = "198.18.0.0/26"


def _hold_new_netns() -> int:
    """A child that sits in a network namespace of its own until killed."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                os._exit(1)
            os.write(ready_w, b"x")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    ok = os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    if not ok:
        os.waitpid(pid, 0)
        raise OSError("cannot make a network namespace for the rehearsal")
    return pid


@contextmanager
def _namespaces(count: int) -> Iterator[list[str]]:
    holders: list[int] = []
    try:
        for _ in range(count):
            holders.append(_hold_new_netns())
        yield [f"/proc/{pid}/ns/net" for pid in holders]
    finally:
        for pid in holders:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def rehearse() -> None:
    from ..main import serve

    try:
        with _namespaces(2) as (node, pod), tempfile.TemporaryDirectory() as scratch, entered(node):
            conf: dict[str, Any] = {
                "cniVersion": versions.LATEST, "name": "rehearsal", "type": "calico-py",
                "mtu_file_path": os.path.join(scratch, "mtu"),
                "ipam": {"type": IPAM_PLUGIN_NAME, "subnet": _BLOCK, "dataDir": scratch},
            }
            for verb in ("ADD", "CHECK", "DEL"):
                env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "rehearsal", "CNI_NETNS": pod,
                       "CNI_IFNAME": "eth0", "CNI_PATH": ""}
                code, reply = serve(env, json.dumps(conf).encode(), "calico-py")
                if code != 0:
                    logs.log.warning("agent: rehearsal %s failed: %s", verb, reply)
                    return
                if verb == "ADD":
                    conf["prevResult"] = reply
    except OSError as err:
        logs.log.warning("agent: no rehearsal (%s); the first requests will be slower", err)
