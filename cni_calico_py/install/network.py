"""The conflist the node's runtime loads, from the ConfigMap's text.

It is checked here as the plugin itself will check it, before anything on
the node changes: a config the plugin refuses would fail every pod's ADD
with a node that looks Ready.
"""

from __future__ import annotations

import json
from typing import Any

from ipam.validation import parse_static

from ..config import validate_netconf
from ..core import versions
from ..core.constants import IPAM_PLUGIN_NAME, PLUGIN_NAME
from ..core.errors import CNIError
from .errors import InstallError

# Replaced by the kubeconfig's path on the node, as Calico's install-cni does.
KUBECONFIG_PLACEHOLDER = "__KUBECONFIG_FILEPATH__"


def render(text: str, kubeconfig_path: str, source: str) -> str:
    """The conflist to write: `text` with its placeholders filled in, once the plugin
    would accept it; InstallError naming `source` and what is wrong otherwise."""
    rendered = text.replace(KUBECONFIG_PLACEHOLDER, kubeconfig_path)
    try:
        data = json.loads(rendered)
    except ValueError as err:
        raise InstallError(f"{source} is not valid JSON: {err}") from None
    check(data, source)
    return rendered if rendered.endswith("\n") else rendered + "\n"


def check(data: Any, source: str) -> None:
    """InstallError unless `data` is a conflist whose calico-py plugin the plugin accepts."""
    if not isinstance(data, dict) or not isinstance(data.get("plugins"), list):
        raise InstallError(f"{source} is not a conflist: it must be a JSON object with a "
                           "\"plugins\" list")
    version = data.get("cniVersion")
    if version not in versions.SUPPORTED_VERSIONS:
        raise InstallError(f"{source}: cniVersion {json.dumps(version)} is not one this plugin "
                           f"speaks ({', '.join(versions.SUPPORTED_VERSIONS)})")
    ours = [p for p in data["plugins"] if isinstance(p, dict) and p.get("type") == PLUGIN_NAME]
    if not ours:
        raise InstallError(f"{source} has no plugin of type {PLUGIN_NAME!r}: it would not "
                           "network pods with calico-py")
    # Each plugin gets the list's name and version from the runtime, as here.
    network = {**ours[0], "name": data.get("name"), "cniVersion": version}
    try:
        validate_netconf(network)
        ipam = network.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == IPAM_PLUGIN_NAME:
            parse_static(network)
    except CNIError as err:
        raise InstallError(f"{source}: the {PLUGIN_NAME} plugin would refuse it: {err}") from None


def plugin_types(text: str) -> list[str]:
    """The chain's plugin types, for the log (the text was checked by render)."""
    return [str(p.get("type")) for p in json.loads(text)["plugins"] if isinstance(p, dict)]
