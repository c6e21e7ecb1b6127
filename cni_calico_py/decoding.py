"""stdin as a network config: JSON decoding, the version check, readable field paths.

Kept apart from the config models so the IPAM plugin need not build them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import versions
from .errors import CNIError, Code

if TYPE_CHECKING:
    from pydantic import ValidationError


def decode_json(stdin: bytes) -> dict[str, Any]:
    """stdin as a JSON object, or error 6."""
    try:
        data = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as err:
        raise CNIError(
            Code.DECODING_FAILURE,
            f"network config on stdin is not valid JSON: {err}",
            "stdin",
        ) from None
    if not isinstance(data, dict):
        raise CNIError(
            Code.DECODING_FAILURE,
            f"network config on stdin must be a JSON object, got {type(data).__name__}",
            "stdin",
        )
    return data


def check_version(raw: dict[str, Any], verb: str) -> str:
    """The requested cniVersion, after checking this plugin speaks it for `verb`."""
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "invalid network config: cniVersion: field required, expected a version string "
            f"such as {versions.LATEST!r}",
            "cniVersion",
        )
    versions.require_supported(version)
    versions.require_verb_allowed(verb, version)
    return version


def field_path(prefix: str, loc: Sequence[int | str]) -> str:
    """`ipam.ranges[0][1].rangeStart`: the way an operator reads a JSON path."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def config_error(err: ValidationError, prefix: str = "") -> CNIError:
    """Turn pydantic's report into one readable line naming each field path."""
    problems = []
    for item in err.errors():
        path = field_path(prefix, item["loc"])
        problem = item["msg"]
        if item["type"] not in ("missing",) and "input" in item:
            problem += f" (got {json.dumps(item['input'], default=str)[:80]})"
        problems.append(f"{path or '<root>'}: {problem}")
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        "invalid network config: " + "; ".join(problems),
        ", ".join(p.split(":", 1)[0] for p in problems),
    )
