"""A config is checked once; later processes read the verdict back."""

from __future__ import annotations

import os

import pytest

from cni_calico_py.core import verdicts


@pytest.fixture
def directory(tmp_path, monkeypatch):
    path = tmp_path / "verdicts"
    monkeypatch.setenv(verdicts.DIRECTORY_ENV, str(path))
    return path


def counting(values):
    calls = []

    def validate():
        calls.append(1)
        return dict(values)

    return validate, calls


def test_the_second_lookup_does_not_validate_again(directory):
    validate, calls = counting({"mtu": 1450})
    assert verdicts.remembered("netconf", {"a": 1}, validate) == {"mtu": 1450}
    assert verdicts.remembered("netconf", {"a": 1}, validate) == {"mtu": 1450}
    assert len(calls) == 1
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    verdicts.remembered("netconf", {"a": 2}, validate)
    verdicts.remembered("ipam", {"a": 1}, validate)
    assert len(calls) == 3


def test_a_refused_config_is_checked_every_time(directory):
    def refuse():
        raise ValueError("bad")

    for _ in range(2):
        with pytest.raises(ValueError):
            verdicts.remembered("netconf", {"bad": True}, refuse)
    assert not directory.exists() or list(directory.iterdir()) == []


def test_a_directory_others_can_write_is_not_trusted(directory):
    validate, calls = counting({"x": 1})
    verdicts.remembered("netconf", {}, validate)
    os.chmod(directory, 0o777)
    verdicts.remembered("netconf", {}, validate)
    assert len(calls) == 2


def test_a_damaged_verdict_is_checked_again(directory):
    validate, calls = counting({"x": 1})
    verdicts.remembered("netconf", {}, validate)
    (only,) = directory.iterdir()
    only.write_text("{not json")
    assert verdicts.remembered("netconf", {}, validate) == {"x": 1}
    assert len(calls) == 2


def test_off_always_validates(monkeypatch):
    monkeypatch.setenv(verdicts.DIRECTORY_ENV, "off")
    validate, calls = counting({"x": 1})
    verdicts.remembered("netconf", {}, validate)
    verdicts.remembered("netconf", {}, validate)
    assert len(calls) == 2
