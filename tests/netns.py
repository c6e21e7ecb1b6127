"""Network namespaces, nodes and the node agent, for tests and the benchmark alike.

Every name starts with a per-run prefix and everything made is removed, also
after a failure or Ctrl-C, so the machine's own namespace is never touched.
Standard library only: `python -m bench` imports it without the test extras.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETNS_DIR = "/var/run/netns"
TEST_PREFIX = "cpt"
CLONE_NEWNET = 0x40000000


def sh(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def ip_json(netns: str, *args: str) -> Any:
    out = sh("ip", "-j", *args, netns=netns).stdout
    return json.loads(out) if out.strip() else []


def ip_batch(lines: list[str], force: bool = False) -> None:
    """Several `ip` commands in one process; `force`: go on past failing lines, raise nothing."""
    proc = subprocess.run(["ip", *(["-force"] if force else []), "-batch", "-"],
                          input="".join(f"{line}\n" for line in lines), capture_output=True, text=True)
    if proc.returncode != 0 and not force:
        raise RuntimeError(f"ip -batch: {proc.stderr.strip()[:500]}")


def unique_name(kind: str, prefix: str = TEST_PREFIX) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}-{kind}"


def add_netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", netns=name)
    return os.path.join(NETNS_DIR, name)


def del_netns(name: str) -> None:
    sh("ip", "netns", "del", name, check=False)


def _setns(fd: int, what: str) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


def enter(path: str) -> None:
    """Move the calling thread into the network namespace at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, path)
    finally:
        os.close(fd)


@contextmanager
def inside(path: str) -> Iterator[None]:
    """Run the body with this thread in the network namespace at `path`, then go back."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(path)
        try:
            yield
        finally:
            _setns(original, "the original namespace")
    finally:
        os.close(original)


def wait_for(predicate: Callable[..., object], what: str = "condition", timeout: float = 15.0,
             interval: float = 0.05) -> float:
    """Poll until `predicate()` is true; the seconds it took, or AssertionError after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


@dataclass
class Node:
    """A node: a namespace with an uplink to an `up` namespace and a default route.

    A real node has an address and a default route that does not go through a
    pod's veth: proxy ARP for 169.254.1.1 needs it, and the node needs an
    address to ping its pods from.
    """

    name: str
    upstream: str
    address: str
    pods: list[str] = field(default_factory=list)
    # Where this node's agent listens; None: the plugin runs cold (in-process).
    agent_socket: str | None = None

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*args, check=check, netns=self.name)

    def routes(self, family: str = "-4") -> list[dict[str, Any]]:
        return list(ip_json(self.name, family, "route", "show"))

    def links(self) -> list[dict[str, Any]]:
        return list(ip_json(self.name, "link", "show"))

    def add_pod(self) -> str:
        name = unique_name(f"pod{len(self.pods)}")
        path = add_netns(name)
        self.pods.append(name)
        return path

    def add_pods(self, count: int) -> list[str]:
        """`count` more pod namespaces at once, lo left down (a runtime's loopback plugin's job)."""
        stem = self.name.removesuffix("-node")
        names = [f"{stem}-p{len(self.pods) + i}" for i in range(count)]
        self.pods.extend(names)
        ip_batch([f"netns add {n}" for n in names])
        return [os.path.join(NETNS_DIR, n) for n in names]

    def remove(self) -> None:
        # A second Ctrl-C must not cut the cleanup short: it is held until the end.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            ip_batch([f"netns del {n}" for n in (*self.pods, self.name, self.upstream)], force=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextmanager
def make_node(index: int = 1, prefix: str = TEST_PREFIX, net: str | None = None) -> Iterator[Node]:
    """A node on `net`.0/24 (10.250.<index> by default): it is .2, its upstream .1."""
    net = net or f"10.250.{index}"
    stem = unique_name("node", prefix).removesuffix("-node")
    node = Node(name=f"{stem}-node", upstream=f"{stem}-up", address=f"{net}.2")
    try:
        ip_batch([f"netns add {node.name}", f"netns add {node.upstream}"])
        for netns, args in (
            (node.name, "link set lo up"),
            (node.upstream, "link set lo up"),
            (node.name, f"link add eth0 type veth peer name uplink netns {node.upstream}"),
            (node.name, f"addr add {node.address}/24 dev eth0"),
            (node.name, "link set eth0 up"),
            (node.upstream, f"addr add {net}.1/24 dev uplink"),
            (node.upstream, "link set uplink up"),
            (node.name, f"route add default via {net}.1"),
        ):
            sh("ip", "-n", netns, *args.split())
        node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        yield node
    finally:
        node.remove()


@contextmanager
def running_agent(node: Node | None, executable: str, socket_path: str, log_path: str | None = None,
                  timeout: float = 30.0, command: Sequence[str] = (),
                  env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The node agent in the node's namespace (None: this thread's), stopped afterwards whatever happens.

    `command` (default: `executable agent --socket socket_path`) starts it; its
    output is appended to `log_path`, by default the socket's path + ".log".
    """
    log_path = log_path or socket_path + ".log"
    argv = [*(["ip", "netns", "exec", node.name] if node else []),
            *(command or [executable, "agent", "--socket", socket_path])]
    with open(log_path, "ab") as log:
        agent = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)

    def answers() -> bool:
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited {agent.returncode}: {Path(log_path).read_text()}")
        return os.path.exists(socket_path) and agent_status(executable, socket_path) is not None

    try:
        wait_for(answers, f"the agent to answer on {socket_path} (its log: {log_path})", timeout)
        if node:
            node.agent_socket = socket_path
        yield agent
    finally:
        if node:
            node.agent_socket = None
        stop_process(agent)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not gone within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def agent_status(executable: str, socket_path: str) -> Any:
    """`agent status --json` as parsed JSON, or None when no agent answers."""
    proc = subprocess.run([executable, "agent", "status", "--json", "--socket", socket_path],
                          capture_output=True, text=True, timeout=30)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def run_cni(
    node: Node,
    executable: str,
    env: Mapping[str, str],
    stdin: str | bytes,
    timeout: float = 60,
) -> tuple[int, Any, str]:
    """Run the real executable in the node's namespace; returns (exit code, JSON or text, stderr)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CALICO_PY_AGENT_SOCKET": node.agent_socket or "off",
        **env,
    }
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, executable],
        input=data, env=full_env, capture_output=True, timeout=timeout,
    )
    out = proc.stdout.decode()
    try:
        parsed: Any = json.loads(out) if out.strip() else None
    except ValueError:
        parsed = out
    return proc.returncode, parsed, proc.stderr.decode()
