"""The network config of this IPAM's plugin, read from a conflist or a single conf on disk.

`calico-py ipam show` and the node daemon (which gives idle blocks back only
while it can see their addresses) both read the network this way.
"""

from __future__ import annotations

import json
from typing import Any

from cni_calico_py.core.constants import IPAM_PLUGIN_NAME


class ConflistError(Exception):
    """The file cannot be read, is not a network config, or no plugin in it uses this IPAM."""


def load_network(path: str) -> dict[str, Any]:
    """The network config (name, cniVersion, ipam) from a conflist or a single conf."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as err:
        raise ConflistError(f"cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise ConflistError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConflistError(f"{path} must hold a JSON object (a conflist or a network config)")
    plugins = data.get("plugins")
    if plugins is None:
        entries = [data]
    elif isinstance(plugins, list):
        entries = [p for p in plugins if isinstance(p, dict)]
    else:
        raise ConflistError(f"{path}: plugins must be a list")
    for entry in entries:
        ipam = entry.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == IPAM_PLUGIN_NAME:
            return {**entry, "name": data.get("name"), "cniVersion": data.get("cniVersion")}
    raise ConflistError(f"{path}: no plugin there uses ipam type {IPAM_PLUGIN_NAME!r}")
