"""One node for an attack test: its pods, the plugin as the runtime calls it, the agent if any."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.attack.driver import AgentWorkers, NodeThreads, Plugin
from tests.attack.invariants import Snapshot
from tests.cni_calls import BLOCK_V4, netconf
from tests.netns import Node, agent_status, running_agent


@dataclass
class Harness:
    mode: str
    node: Node
    plugin: Plugin
    threads: NodeThreads
    store: Path  # <dataDir>/<network name>
    pods: list[str]  # netns names
    workers: AgentWorkers | None  # None: no agent, the plugin runs cold
    plugin_log: Path

    def snapshot(self, pods: list[str] | None = None) -> Snapshot:
        return Snapshot.take(self.store, self.node.name, self.pods if pods is None else pods, BLOCK_V4)

    def quiet(self, found: list[str]) -> None:
        """Wait for the agent's workers to finish whatever they still run (killed callers' too)."""
        if self.workers is not None:
            problem = self.workers.wait_quiet()
            if problem:
                found.append(problem)


@contextmanager
def harness(mode: str, node: Node, exe: str, cni_path: str, tmp_path: Path, pods: int,
            agent: bool) -> Iterator[Harness]:
    for _ in range(pods):
        node.add_pod()
    plugin_log = tmp_path / "cni.log"
    conf = netconf(tmp_path, log_level="info", log_file_path=str(plugin_log))
    with ExitStack() as stack:
        threads = NodeThreads(node.path)
        stack.callback(threads.close)
        socket = None
        workers = None
        if agent:
            socket = str(tmp_path / "agent.sock")
            process = stack.enter_context(running_agent(node, exe, socket))
            status = agent_status(exe, socket)
            assert status is not None, "the agent does not answer status"
            workers = AgentWorkers(process.pid, int(status["workers"]))
        plugin = Plugin(threads, exe, conf, cni_path, socket)
        yield Harness(mode, node, plugin, threads, tmp_path / "testnet", list(node.pods), workers,
                      plugin_log)
