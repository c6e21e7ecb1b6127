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


# Deeper than any network config needs; deeper nesting is refused before any
# code that walks the config recursively (validation, hashing, error messages).
MAX_DEPTH = 64


def loads(text: bytes | str) -> Any:
    """JSON, with nesting too deep for the parser (RecursionError) as a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def decode_json(stdin: bytes) -> dict[str, Any]:
    """stdin as a JSON object, or error 6."""
    try:
        data = loads(stdin)
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
    if too_deep(data, MAX_DEPTH):
        raise CNIError(
            Code.DECODING_FAILURE,
            f"network config on stdin is nested more than {MAX_DEPTH} levels deep",
            "stdin",
        )
    return data


def too_deep(data: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


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


def path_problem(path: str) -> str:
    """Why `path` cannot name a file (NUL, text the file system cannot encode), or ""."""
    if "\0" in path:
        return "holds a NUL character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    return ""
