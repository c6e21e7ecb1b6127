from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.ipam.helpers import cni_env
from tests.netns import Node, run_cni

Runner = Callable[..., tuple[int, Any, str]]


@pytest.fixture
def ipam(node: Node, ipam_exe: str) -> Runner:
    """Run the real calico-py-ipam in the node netns: ipam(command, conf, container_id, ...)."""

    def run(command: str, conf: dict[str, Any], container_id: str = "", **kwargs: Any):
        if command in ("ADD", "CHECK"):
            kwargs.setdefault("netns", node.path)
        return run_cni(node, ipam_exe, cni_env(command, container_id, **kwargs), json.dumps(conf))

    return run
