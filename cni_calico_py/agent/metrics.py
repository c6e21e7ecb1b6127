"""The agent's Prometheus metrics, served on a localhost port when asked for.

The agent process (not its workers) owns them: each worker reports every
request it served on a pipe (stats.Report), and the agent counts it here. A
request the agent did not take is served by its caller in a process of its
own, which appends one line to the fallback file beside the socket
(`<socket>.fallbacks`); the agent counts those lines when scraped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .fallbacks import fallback_file
from .stats import Report

ADDRESS = "127.0.0.1"
# Seconds: a served ADD takes ~10 ms, a DEL ~25 ms; lock waits reach 120 s.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0)
LOCK_WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)


class _Fallbacks(Collector):
    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "calico_py_agent_cold_fallbacks",
            "CNI requests served by their caller while this agent's socket existed",
            labels=["verb"])
        counts: dict[str, int] = {}
        try:
            with open(self.path, encoding="ascii", errors="replace") as lines:
                for line in lines:
                    verb = line.strip() or "?"
                    counts[verb] = counts.get(verb, 0) + 1
        except FileNotFoundError:
            pass
        for verb, count in sorted(counts.items()):
            family.add_metric([verb], count)
        yield family


class Metrics:
    def __init__(self, socket_path: str, workers: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "calico_py_agent_requests", "CNI requests the agent's workers served",
            ["verb", "code"], registry=self.registry)
        self.latency = Histogram(
            "calico_py_agent_request_duration_seconds",
            "Time from the go byte to the answer, per verb", ["verb"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lock_wait = Histogram(
            "calico_py_agent_lock_wait_seconds",
            "Time a request waited for the attachment, store and node-state locks", ["verb"],
            buckets=LOCK_WAIT_BUCKETS, registry=self.registry)
        self.repairs = Counter(
            "calico_py_agent_repairs", "What the repairer put back on the node: a pod's route, "
            "its veth up, a setting of it, a block's blackhole", ["what"], registry=self.registry)
        Gauge("calico_py_agent_workers", "Workers the agent keeps",
              registry=self.registry).set(workers)
        # A counter starts at zero with its process: earlier lines are not this agent's.
        path = fallback_file(socket_path)
        with open(path, "w", encoding="ascii"):
            pass
        os.chmod(path, 0o600)
        self.registry.register(_Fallbacks(path))

    def record(self, report: Report) -> None:
        self.requests.labels(report.verb, str(report.cni_code)).inc()
        self.latency.labels(report.verb).observe(report.millis / 1000)
        self.lock_wait.labels(report.verb).observe(report.lock_wait_millis / 1000)

    def record_repair(self, what: str) -> None:
        self.repairs.labels(what).inc()

    def serve(self, port: int) -> None:
        """Serve /metrics on 127.0.0.1:`port`, in a thread of this process.

        Workers are forked from this process later: they inherit no thread,
        and never touch the registry.
        """
        start_http_server(port, addr=ADDRESS, registry=self.registry)
