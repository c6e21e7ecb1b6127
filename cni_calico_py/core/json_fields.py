"""Reading typed fields out of decoded JSON, each refusal naming the field path (error 6)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import CNIError, Code

_T = TypeVar("_T")
# Numbers in results (MTUs, priorities, tables) are unsigned 32-bit in the kernel.
MAX_NUMBER = 2**32 - 1


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(what, f"must be a JSON object, got {kind(value)}")
    return value


def list_of(raw: dict[str, Any], key: str, what: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"{what}.{key}", f"must be a list, got {kind(value)}")
    return value


def text(raw: dict[str, Any], key: str, what: str, required: bool = False) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise bad(f"{what}.{key}", "is required")
        return ""
    if not isinstance(value, str):
        raise bad(f"{what}.{key}", f"must be a string, got {kind(value)}")
    return value


def texts(raw: dict[str, Any], key: str, what: str) -> list[str]:
    items = list_of(raw, key, what)
    for n, item in enumerate(items):
        if not isinstance(item, str):
            raise bad(f"{what}.{key}[{n}]", f"must be a string, got {kind(item)}")
    return list(items)


def number(raw: dict[str, Any], key: str, what: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise bad(f"{what}.{key}", f"must be a whole number from 0 to {MAX_NUMBER}, "
                   f"got {kind(value)}")
    return value


def address(raw: dict[str, Any], key: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    found = text(raw, key, what)
    return parsed(ipaddress.ip_address, found, f"{what}.{key}", "an IP address") if found else None


def parsed(parse: Callable[..., _T], text: str, what: str, expected: str, **options: Any) -> _T:
    try:
        return parse(text, **options)
    except ValueError:
        raise bad(what, f"must be {expected}, got {text[:80]!r}") from None


def kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number" if isinstance(value, float) or abs(value) > MAX_NUMBER else str(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


def bad(what: str, rule: str) -> CNIError:
    return CNIError(Code.DECODING_FAILURE, f"{what} {rule}", what)
