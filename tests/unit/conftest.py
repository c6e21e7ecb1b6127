"""The fake IPAM and dataplane of the verb tests, writing to one journal."""

from __future__ import annotations

import pytest

from tests.fakes import FakeDataplane, FakeIpam


@pytest.fixture
def journal() -> list[str]:
    return []


@pytest.fixture
def ipam(journal) -> FakeIpam:
    return FakeIpam(journal, offer=["10.0.0.5/26", "fd00::5/64"])


@pytest.fixture
def dataplane(journal) -> FakeDataplane:
    return FakeDataplane(journal)
