"""A config is checked once; later processes read the verdict back."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_the_directory_keeps_only_the_newest(directory, monkeypatch):
    monkeypatch.setattr(verdicts, "MAX_VERDICTS", 3)
    validate, calls = counting({"x": 1})
    seen: set[Path] = set()
    for n in range(5):
        verdicts.remembered("netconf", {"n": n}, validate)
        (new,) = set(directory.iterdir()) - seen
        os.utime(new, ns=(n, n))  # written in this order, whatever the clock's resolution
        seen = set(directory.iterdir())
    assert len(seen) == 3
    verdicts.remembered("netconf", {"n": 4}, validate)
    assert len(calls) == 5  # the newest is still there
    verdicts.remembered("netconf", {"n": 0}, validate)
    assert len(calls) == 6  # the oldest went


@pytest.mark.parametrize("key", sorted(verdicts.PER_REQUEST_KEYS))
def test_a_subject_holding_a_per_request_key_is_never_written(directory, key):
    validate, calls = counting({"x": 1})
    for n in range(3):
        verdicts.remembered("netconf", {"name": "a", key: [n]}, validate)
    assert len(calls) == 3
    assert not directory.exists() or list(directory.iterdir()) == []


def test_other_validating_code_does_not_trust_the_verdict(directory, tmp_path, monkeypatch):
    package = tmp_path / "src" / "checker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text("LIMIT = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    validate, calls = counting({"x": 1})
    verdicts.remembered("netconf", {}, validate, code=("checker.rules",))
    verdicts.remembered("netconf", {}, validate, code=("checker.rules",))
    assert len(calls) == 1
    (package / "rules.py").write_text("LIMIT = 2\n")
    monkeypatch.setattr(verdicts, "_fingerprints", {})  # a new process
    verdicts.remembered("netconf", {}, validate, code=("checker.rules",))
    assert len(calls) == 2


def test_code_without_source_is_validated_every_time(directory):
    validate, calls = counting({"x": 1})
    for _ in range(2):
        verdicts.remembered("netconf", {}, validate, code=("no_such_package_here.rules",))
    assert len(calls) == 2
