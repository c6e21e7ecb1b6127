"""The IPAM plugin's CNI handler (standalone `calico-py-ipam`, or in-process)."""

from __future__ import annotations

from typing import Any

from cni_calico_py import results
from cni_calico_py.errors import CNIError, Code
from cni_calico_py.request import Request


def execute(request: Request, raw: dict[str, Any]) -> results.Result | None:
    """ADD returns the abbreviated result; DEL/CHECK/GC/STATUS return None or raise."""
    raise CNIError(Code.INTERNAL, "calico-py-ipam is not implemented yet")


def handle(request: Request) -> dict[str, Any] | None:
    raise CNIError(Code.INTERNAL, "calico-py-ipam is not implemented yet")
