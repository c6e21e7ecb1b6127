"""Config validation done once per distinct config, remembered across processes.

Every pod on a node arrives with the same network config, and validating it
with pydantic costs more start-up (importing pydantic, building the models)
than all the real work of an ADD. The first process to see a config validates
it and writes the normalised values under a name derived from the config's
exact content and this plugin's version; later processes read them back and
never import pydantic. Only valid configs are remembered: a bad one goes
through the full validation, and gets its error, every time.

The directory is root's alone (0700, like the agent's socket directory), on
tmpfs: a reboot or an upgrade starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from .. import __version__
from . import files
from .logs import log

DIRECTORY_ENV = "CALICO_PY_VERDICTS"
DEFAULT_DIRECTORY = "/run/calico-py/verdicts"

Values = dict[str, Any]


def remembered(kind: str, subject: Any, validate: Callable[[], Values]) -> Values:
    """`validate()`'s values for `subject`, from an earlier process if one had them."""
    directory = os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    if directory == "off":
        return validate()
    text = json.dumps([kind, __version__, subject], sort_keys=True, separators=(",", ":"))
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
    except OSError as err:
        # Only a lost shortcut: the next process validates again.
        log.debug("cannot remember a validated config in %s: %s", directory, err)
