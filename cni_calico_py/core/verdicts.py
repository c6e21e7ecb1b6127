"""Config validation done once per distinct config, remembered across processes.

Every pod on a node arrives with the same network config, and validating it
with pydantic costs more start-up (importing pydantic, building the models)
than all the real work of an ADD. The first process to see a config validates
it and writes the normalised values under a name derived from what the
validator reads of the config and from the validator's own code (the source
of the modules that validate, and pydantic's version, hashed once per
process); later processes read them back and never import pydantic. An edited
or upgraded validator therefore never trusts an older verdict. Only valid
configs are remembered: a bad one goes through the full validation, and gets
its error, every time.

What varies from request to request (CNI's prevResult, runtimeConfig, args,
GC's attachment lists) must stay out of the subject: a subject holding one of
PER_REQUEST_KEYS is validated every time and never written, rather than
leaving a file per request. The directory holds at most MAX_VERDICTS files;
writing one more removes the oldest.

The directory is root's alone (0700, like the agent's socket directory), on
tmpfs: a reboot starts afresh.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from . import files
from .logs import log

DIRECTORY_ENV = "CALICO_PY_VERDICTS"
DEFAULT_DIRECTORY = "/run/calico-py/verdicts"
MAX_VERDICTS = 64
PER_REQUEST_KEYS = frozenset(
    {"prevResult", "runtimeConfig", "args", "cni.dev/valid-attachments", "cni.dev/attachments"}
)
# Part of every validator: the models' engine.
VALIDATION_LIBRARY = "pydantic.version"

Values = dict[str, Any]

_fingerprints: dict[tuple[str, ...], str | None] = {}


def remembered(
    kind: str, subject: Any, validate: Callable[[], Values], *, code: tuple[str, ...] = (),
) -> Values:
    """`validate()`'s values for `subject`, from an earlier process if one had them.

    `subject` is exactly what `validate` reads; `code` names the modules (or
    packages) that do the validating. Without `code`, the whole top-level
    package holding `validate` counts as its code.
    """
    directory = os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    if directory == "off" or (isinstance(subject, dict) and PER_REQUEST_KEYS & subject.keys()):
        return validate()
    modules = code or (validate.__module__.partition(".")[0],)
    fingerprint = code_fingerprint((*modules, VALIDATION_LIBRARY))
    if fingerprint is None:
        return validate()
    text = json.dumps([kind, fingerprint, subject], sort_keys=True, separators=(",", ":"))
    path = os.path.join(directory, f"{kind}-{hashlib.sha256(text.encode()).hexdigest()}.json")
    if _trusted(directory):
        try:
            with open(path, encoding="utf-8") as file:
                values: Values = json.load(file)
                return values
        except (OSError, ValueError):
            pass
    values = validate()
    _remember(directory, path, values)
    return values


def code_fingerprint(modules: tuple[str, ...]) -> str | None:
    """A hash of the modules' source files, or None if one cannot be read.

    A frozen build's modules are in its executable, which changes with them:
    its size, time and inode stand for their source.
    """
    if modules not in _fingerprints:
        digest = hashlib.sha256()
        try:
            if getattr(sys, "frozen", False):
                info = os.stat(sys.executable)
                digest.update(f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}".encode())
            for name in modules:
                for path in _source_files(name):
                    with open(path, "rb") as file:
                        digest.update(path.encode() + b"\0" + file.read())
        except (OSError, ImportError, ValueError) as err:
            log.debug("no fingerprint of %s, validating every time: %s", modules, err)
            _fingerprints[modules] = None
        else:
            _fingerprints[modules] = digest.hexdigest()
    return _fingerprints[modules]


def _source_files(name: str) -> list[str]:
    """A module's source file, or every source file of a package, found without importing it."""
    if getattr(sys, "frozen", False):
        return []
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ImportError(f"no source for {top}")
    if not spec.submodule_search_locations:
        return [spec.origin]
    base = os.path.join(spec.submodule_search_locations[0], *rest.split(".")) if rest \
        else spec.submodule_search_locations[0]
    if not os.path.isdir(base):
        return [base + ".py"]
    return sorted(
        os.path.join(folder, leaf)
        for folder, _, leaves in os.walk(base) for leaf in leaves if leaf.endswith(".py")
    )


def _trusted(directory: str) -> bool:
    """Only a directory that no one but us could have written to."""
    try:
        info = os.stat(directory)
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _remember(directory: str, path: str, values: Values) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _trusted(directory):
            return
        # Only a shortcut: a crash may lose it, never tear it.
        files.replace(path, json.dumps(values), durable=False)
        _prune(directory)
    except OSError as err:
        # Only a lost shortcut: the next process validates again.
        log.debug("cannot remember a validated config in %s: %s", directory, err)


def _prune(directory: str) -> None:
    """Keep the newest MAX_VERDICTS verdicts."""
    with os.scandir(directory) as entries:
        verdicts = [e for e in entries if e.name.endswith(".json") and not e.name.startswith(".")]
    if len(verdicts) <= MAX_VERDICTS:
        return
    by_age = []
    for entry in verdicts:
        with suppress(OSError):  # another process pruned it first
            by_age.append((entry.stat().st_mtime_ns, entry.path))
    for _, path in sorted(by_age)[: len(by_age) - MAX_VERDICTS]:
        with suppress(OSError):
            os.unlink(path)
