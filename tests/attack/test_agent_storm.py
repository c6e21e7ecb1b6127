"""A storm of callers that go away before their answer: the agent and its workers live on.

Runtimes time out and probes do not wait, so a caller may close its socket
before the agent writes to it. Every such write must be an error the agent
handles, never SIGPIPE's death of the agent or of a worker. Clients in the
node's namespace (tests/attack/storm.py) send status requests and CNI
requests and close at once: after the frame, after the worker's `ready`, or
after the go byte (VERSION, which changes nothing). Afterwards the agent has
the same pid, the very workers it had before, has served every request that
got its go byte once, and still answers `agent status`.
CALICO_PY_STORM_REQUESTS sets the number of requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.attack.driver import AgentWorkers
from tests.attack.storm import KINDS, SENT
from tests.netns import Node, agent_status, running_agent, wait_for

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
REQUESTS = max(500, int(os.environ.get("CALICO_PY_STORM_REQUESTS", "1000")))
CLIENTS = 4  # at once, so several workers write to gone callers at the same moment
STORM_SECONDS = 60.0  # the clients stop sending then, whatever is left


def _storm(node: Node, socket_path: str) -> tuple[dict[str, Counter[str]], float]:
    """Run the clients in the node; what each kind of request ended as, and the time taken."""
    per_client = -(-REQUESTS // CLIENTS)
    started = time.monotonic()
    clients = [subprocess.Popen(
        ["ip", "netns", "exec", node.name, sys.executable, "-m", "tests.attack.storm",
         socket_path, str(per_client), str(STORM_SECONDS), str(offset)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for offset in range(CLIENTS)]
    ended: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    try:
        for client in clients:
            out, err = client.communicate(timeout=STORM_SECONDS + 30)
            assert client.returncode == 0, f"a storm client failed: {err.decode()[-2000:]}"
            for kind, outcomes in json.loads(out).items():
                ended[kind].update(outcomes)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    return ended, time.monotonic() - started


def test_callers_that_leave_at_once_kill_neither_the_agent_nor_a_worker(
        bare_node: Node, exe: str, tmp_path: Path) -> None:
    socket_path = str(tmp_path / "agent.sock")
    log = tmp_path / "agent.log"
    with running_agent(bare_node, exe, socket_path, str(log)) as agent:
        before = agent_status(exe, socket_path)
        assert before is not None and before["pid"] == agent.pid
        workers = AgentWorkers(agent.pid, int(before["workers"]))
        assert workers.wait_quiet() == ""
        pool = workers.pids()

        ended, took = _storm(bare_node, socket_path)
        total = sum(sum(outcomes.values()) for outcomes in ended.values())
        summary = (f"{total} requests in {took:.1f} s: "
                   + "; ".join(f"{kind} {dict(outcomes)}" for kind, outcomes in ended.items()))
        gone = log.read_text().count("went away before its answer")
        summary += f"; answers that met a closed socket (the agent log, at least): {gone}"
        print(summary)

        def log_tail() -> str:
            return f"\n{summary}\nthe agent's log ends:\n{log.read_text()[-3000:]}"

        assert agent.poll() is None, f"the agent died (exit {agent.returncode}){log_tail()}"
        assert total >= 500, f"the storm stopped early{log_tail()}"
        assert all(set(outcomes) == {SENT} for outcomes in ended.values()), \
            f"requests the agent did not take as a live agent does{log_tail()}"
        problem = workers.wait_quiet()
        assert problem == "", problem + log_tail()
        assert workers.pids() == pool, \
            f"workers were replaced: {sorted(pool)} -> {sorted(workers.pids())}{log_tail()}"
        assert "ended with status" not in log.read_text(), f"a worker died{log_tail()}"
        # The storm reached the write that killed the agent: its answer to a status caller gone.
        assert "a status caller went away" in log.read_text(), \
            f"no status answer met a closed socket{log_tail()}"
        # Every request that got its go byte ran once, and none other ran.
        went = ended["cni-go"][SENT]
        wait_for(lambda: (agent_status(exe, socket_path) or {}).get("served") == {"VERSION": went},
                 f"the agent to count {went} VERSION requests served", timeout=10)
        after = agent_status(exe, socket_path)
        assert after is not None and after["pid"] == agent.pid
