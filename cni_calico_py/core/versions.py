"""CNI spec versions this plugin speaks, and which verbs each allows."""

from __future__ import annotations

from .errors import CNIError, Code

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# The first spec version that defines each verb; older configs may not use it.
_VERB_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not a version number",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        ) from None


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def require_supported(version: str, what: str = "cniVersion") -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"{what} {version!r} is not supported",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )


def require_verb_allowed(verb: str, version: str) -> None:
    since = _VERB_SINCE.get(verb)
    if since and not at_least(version, since):
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            f"{verb} is not defined for cniVersion {version}",
            f"{verb} needs cniVersion {since} or later",
        )


def version_info() -> dict[str, object]:
    return {"cniVersion": LATEST, "supportedVersions": list(SUPPORTED_VERSIONS)}
