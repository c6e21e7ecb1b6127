"""Network namespaces for tests: a node with an uplink, and pods.

Every name starts with a per-test prefix and everything made is removed,
also when the test fails, so the machine's own namespace is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETNS_DIR = "/var/run/netns"
TEST_PREFIX = "cpt"


def sh(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def ip_json(netns: str, *args: str) -> Any:
    out = sh("ip", "-j", *args, netns=netns).stdout
    return json.loads(out) if out.strip() else []


def unique_name(kind: str) -> str:
    return f"{TEST_PREFIX}{uuid.uuid4().hex[:6]}-{kind}"


def add_netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", netns=name)
    return os.path.join(NETNS_DIR, name)


def del_netns(name: str) -> None:
    sh("ip", "netns", "del", name, check=False)


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

    def remove(self) -> None:
        for pod in self.pods:
            del_netns(pod)
        del_netns(self.name)
        del_netns(self.upstream)


@contextmanager
def running_agent(node: Node, executable: str, socket_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """The node agent inside the node's namespace, stopped afterwards whatever happens."""
    log = open(socket_path + ".log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        ["ip", "netns", "exec", node.name, executable, "agent", "--socket", socket_path],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not _agent_answers(executable, socket_path):
            if agent.poll() is not None or time.monotonic() > deadline:
                log_text = Path(socket_path + ".log").read_text()
                raise RuntimeError(f"agent did not start: {log_text}")
            time.sleep(0.05)
        node.agent_socket = socket_path
        yield agent
    finally:
        node.agent_socket = None
        stop_process(agent)
        log.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not gone within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def agent_status(executable: str, socket_path: str) -> dict[str, Any] | None:
    proc = subprocess.run([executable, "agent", "status", "--json", "--socket", socket_path],
                          capture_output=True, text=True, timeout=30)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _agent_answers(executable: str, socket_path: str) -> bool:
    return os.path.exists(socket_path) and agent_status(executable, socket_path) is not None


@contextmanager
def make_node(index: int = 1) -> Iterator[Node]:
    base = unique_name("node")
    node = Node(name=base, upstream=base[:-4] + "up", address=f"10.250.{index}.2")
    try:
        add_netns(node.name)
        add_netns(node.upstream)
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink",
           "netns", node.upstream, netns=node.name)
        sh("ip", "addr", "add", f"{node.address}/24", "dev", "eth0", netns=node.name)
        sh("ip", "link", "set", "eth0", "up", netns=node.name)
        sh("ip", "addr", "add", f"10.250.{index}.1/24", "dev", "uplink", netns=node.upstream)
        sh("ip", "link", "set", "uplink", "up", netns=node.upstream)
        sh("ip", "route", "add", "default", "via", f"10.250.{index}.1", netns=node.name)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=node.name)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", netns=node.name)
        yield node
    finally:
        node.remove()


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
