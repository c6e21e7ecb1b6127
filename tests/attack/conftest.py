"""Fixtures for the attack tests: the installed executables, a node, its pods.

The installed executables come from the session's `installed` fixture
(tests/conftest.py): `make build` and `make install DESTDIR=<tmp>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Node, make_node


@pytest.fixture(scope="session")
def exe(installed_bin: Path) -> str:
    """The installed calico-py: the launcher, which runs the frozen program when it cannot forward."""
    return str(installed_bin / "calico-py")


@pytest.fixture
def bare_node(root: None) -> Iterator[Node]:
    """A node namespace of this test's own, removed with its pods whatever happens."""
    with make_node() as made:
        yield made
