"""`calico-py agent`: the plugin's code kept loaded, serving requests on a unix socket.

Each connection is served by a forked worker, so requests run concurrently,
a bad request or a crash takes down only its worker, and every worker starts
from the same warm state. Workers run the very handler the executable runs;
all state is on disk (the IPAM store and its lock), so the lock holds across
workers and cold-path processes alike, and a restart loses nothing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import signal
import socket
import struct
import time
from typing import Any

from .. import logs, versions
from . import framing
from .stats import Stats

READ_TIMEOUT = 5.0
_UCRED = struct.Struct("3i")


def warm_up() -> None:
    """Import and exercise everything a request needs before the first one arrives.

    Validation and a netlink round trip initialise what pydantic and pyroute2
    otherwise set up on first use, in every worker again.
    """
    from ipam import plugin as ipam_plugin
    from ipam import show  # noqa: F401

    from .. import config, config_models, main, plugin  # noqa: F401
    from ..commands import add, check, delete, housekeeping  # noqa: F401
    from ..dataplane import inspect, netlink  # noqa: F401

    sample = {
        "cniVersion": versions.LATEST, "name": "warm-up", "type": "calico-py",
        "ipam": {"type": "calico-py-ipam", "subnet": "10.0.0.0/26"},
    }
    config.parse_netconf(sample)
    config_models.validate_netconf(sample)
    ipam_plugin.validate(sample)
    with netlink.host_handle() as handle:
        handle.link_index("lo")
    from .rehearsal import rehearse

    rehearse()
    logs.configure("info")


def _bind(path: str) -> socket.socket:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    if path == framing.DEFAULT_SOCKET:
        os.chmod(directory, 0o700)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise SystemExit(f"another agent is serving {path}")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is 0600 from its first moment
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(256)
    return listener


def serve_forever(path: str) -> int:
    logs.configure("info")
    warm_up()
    # Workers are forked from this state: frozen objects stay out of the
    # collector's reach, so it does not touch (and copy) their pages.
    gc.collect()
    gc.freeze()
    listener = _bind(path)
    reports_r, reports_w = os.pipe()
    stats = Stats()
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    # Workers are never waited for; ignoring SIGCHLD lets the kernel reap them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(reports_r, selectors.EVENT_READ)
    logs.log.info("agent %d serving %s", os.getpid(), path)
    pending = b""
    try:
        while not stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj is listener:
                    _accept(listener, reports_w, stats)
                else:
                    pending += os.read(reports_r, 65536)
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        _record(stats, line)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        logs.log.info("agent %d stopped", os.getpid())
    return 0


def _record(stats: Stats, line: bytes) -> None:
    try:
        verb, code, millis = line.decode().split()
        stats.record(verb, int(code), float(millis))
    except ValueError:
        logs.log.warning("agent: unreadable worker report %r", line)


def _accept(listener: socket.socket, reports_w: int, stats: Stats) -> None:
    try:
        conn, _ = listener.accept()
    except OSError as err:
        logs.log.warning("agent: accept failed: %s", err)
        return
    try:
        pid = os.fork()
    except OSError as err:
        logs.log.error("agent: cannot fork a worker: %s", err)
        conn.close()
        return
    if pid:
        conn.close()
        return
    # The worker: never returns into the parent's loop.
    code = 0
    try:
        gc.disable()  # a worker lives for one request
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        listener.close()
        _work(conn, reports_w, stats)
    except BaseException as err:  # a worker must never unwind into the accept loop
        logs.log.warning("agent worker: %s: %s", type(err).__name__, err)
        code = 1
    finally:
        os._exit(code)


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return int(uid)


def _work(conn: socket.socket, reports_w: int, stats: Stats) -> None:
    conn.settimeout(READ_TIMEOUT)
    uid = _peer_uid(conn)
    if uid not in (0, os.getuid()):
        logs.log.warning("agent: refused a request from uid %d", uid)
        return
    request = framing.receive(conn)
    if not isinstance(request, dict):
        raise framing.FrameError("request is not a JSON object")
    if request.get("op") == "status":
        framing.send(conn, stats.snapshot(os.getppid()))
        return
    env, stdin, program = _cni_request(request)
    if request.get("netns") != framing.netns_identity():
        # Serving it here would change the wrong namespace: let the caller do it.
        logs.log.info("agent: declined a request from another network namespace")
        conn.sendall(framing.NOT_READY)
        return
    conn.sendall(framing.READY)
    if conn.recv(1) != framing.GO:
        return
    started = time.monotonic()
    from ..main import serve_text

    code, out = serve_text(env, stdin, program)
    framing.send_result(conn, code, out.encode())
    millis = (time.monotonic() - started) * 1000
    os.write(reports_w, f"{env.get('CNI_COMMAND', '?')} {code} {millis:.2f}\n".encode())


def _cni_request(request: dict[str, Any]) -> tuple[dict[str, str], bytes, str]:
    env, stdin, program = request.get("env"), request.get("stdin"), request.get("program")
    if request.get("op") != "cni" or not isinstance(env, dict) or not isinstance(stdin, str):
        raise framing.FrameError("not a CNI request frame")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise framing.FrameError("env must map strings to strings")
    return env, stdin.encode("latin-1"), program if isinstance(program, str) else "calico-py"


def status(path: str) -> dict[str, Any] | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(path)
        framing.send(sock, {"op": "status"})
        reply = framing.receive(sock)
        return reply if isinstance(reply, dict) else None
    except (OSError, framing.FrameError):
        return None
    finally:
        sock.close()
