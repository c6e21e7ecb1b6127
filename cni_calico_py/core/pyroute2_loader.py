"""Loading parts of pyroute2 without its package __init__."""

from __future__ import annotations

import importlib.util
import sys
import types


def load_pyroute2() -> None:
    """Register pyroute2 as a bare package, so its submodules load on their own.

    The package's __init__ imports every netlink family it knows (~200 ms
    here); a pod needs only rtnetlink. Everything of ours that imports
    pyroute2 calls this first.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("pyroute2")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package
