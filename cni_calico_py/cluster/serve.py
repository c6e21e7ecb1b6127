"""`calico-py node run`: the node daemon with everything around it, the monitors of the
kernel and the IPAM store, the pods' repairer, metrics, the liveness and the signals."""

from __future__ import annotations

import signal
import threading
from typing import Any

from ..core.logs import log
from ..datastore.errors import DatastoreError
from ..datastore.settings import open_backend
from ..repairer import Repairer
from . import overlay
from .addresses import AddressMonitor
from .config import ClusterConfig
from .daemon import NodeDaemon
from .kernel_events import KernelMonitor
from .liveness import Liveness
from .metrics import NodeMetrics


def serve(conf: ClusterConfig, node_ip: str, once: bool) -> int:
    # A server, not a pipe's writer (entry.py gives command-line tools the default
    # SIGPIPE): a metrics scraper or etcd closing early is an error to handle, not a death.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    overlay.preflight(conf.routing_mode)
    daemon = NodeDaemon(conf, node_ip)
    if once:
        daemon.refresh(watch=False)
        state = daemon.sync(force=True)
        daemon.routing.close()
        log.info("node %s synced once: blocks %s", state.nodename, ", ".join(state.blocks))
        return 0
    if conf.metrics_port is not None:
        metrics = daemon.metrics = NodeMetrics(conf)
        daemon.routing.on_repair = metrics.repaired
        metrics.serve(conf.metrics_port)
        log.info("node %s: metrics on http://127.0.0.1:%d/metrics", conf.nodename, conf.metrics_port)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()
        daemon.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("node %s (%s) starting against %s", conf.nodename, node_ip,
             conf.datastore_settings.describe())
    AddressMonitor(daemon.on_address_change).start()
    daemon.mirror.follow(daemon.on_store_change, stop)
    # Before the first sync: whatever is undone from then on wakes the daemon.
    KernelMonitor(conf.pool, daemon.on_kernel_change).start()
    # The pods' own wiring too, for a node that runs no agent (with one, both
    # repair, and neither writes what the other put back).
    pods = Repairer(daemon.metrics.repaired_pod if daemon.metrics else lambda _what: None,
                    "node", conf.state_file)
    threading.Thread(target=pods.run, args=(stop.is_set,), name="pod-repairer",
                     daemon=True).start()
    # Its own client: the lease is renewed from another thread.
    liveness = Liveness(open_backend(conf.datastore_settings), conf.nodename, conf.node_lease_seconds)
    try:
        liveness.renew()
    except DatastoreError as err:
        log.warning("node %s: no lease yet: %s", conf.nodename, err)
    liveness.start(stop)
    daemon.run(stop)
    log.info("node %s stopped", conf.nodename)
    return 0
