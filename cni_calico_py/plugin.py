"""The CNI handler of the main plugin: request -> config -> IPAM -> dataplane -> result."""

from __future__ import annotations

import logging
from typing import Any

from . import config
from .core import decoding, logs, results
from .core.request import Request


def handle(request: Request) -> dict[str, Any] | None:
    raw = decoding.decode_json(request.stdin)
    version = decoding.check_version(raw, request.command)
    netconf = config.parse_netconf(raw)
    logs.configure(netconf.log_level, netconf.log_file_path,
                   netconf.log_file_max_size, netconf.log_file_max_count)
    # The pod's name and sandbox, so its history can be followed by name in the log.
    logs.log.info(
        "%s container=%s ifname=%s netns=%s pod=%s/%s sandbox=%s uid=%s",
        request.command, request.container_id, request.ifname, request.netns,
        request.pod_namespace or "-", request.pod_name or "-",
        request.args.get("K8S_POD_INFRA_CONTAINER_ID", "-"), request.args.get("K8S_POD_UID", "-"),
    )
    if logs.log.isEnabledFor(logging.DEBUG):
        # Every CNI_ARGS key (kubelet also sends IgnoreUnknown and varies the
        # order), and which runtime capabilities arrived, for debugging a runtime.
        logs.log.debug("%s CNI_ARGS %s capabilities=%s", request.command,
                       ";".join(f"{k}={v}" for k, v in sorted(request.args.items())) or "-",
                       ",".join(sorted(raw.get("runtimeConfig") or {})) or "-")
    from . import commands

    outcome = commands.dispatch(request, netconf, raw)
    return results.to_json(outcome, version) if outcome is not None else None
