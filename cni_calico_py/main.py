"""One CNI request as a plain function: `serve(environ, stdin, program)`.

It takes its I/O as arguments, so tests and the agent's workers run the very
function the executable runs. Nothing here knows about the command-line tool
or the agent: they sit above (entry.py chooses between them and this).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TextIO

from .core import logs, versions
from .core.constants import IPAM_PLUGIN_NAME
from .core.errors import CNIError, Code
from .core.request import Request, from_environ

IPAM_PROGRAM = IPAM_PLUGIN_NAME

Handler = Callable[[Request], "dict[str, Any] | None"]


def _requested_version(stdin: bytes) -> str:
    """The version to write an error in: the request's if we speak it."""
    try:
        data = json.loads(stdin)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return versions.LATEST
    version = data.get("cniVersion") if isinstance(data, dict) else None
    return version if isinstance(version, str) and version in versions.SUPPORTED_VERSIONS \
        else versions.LATEST


def _handler_for(program: str) -> Handler:
    if program == IPAM_PROGRAM:
        from ipam.plugin import handle as ipam_handle

        return ipam_handle
    from .plugin import handle

    return handle


def serve(
    environ: Mapping[str, str], stdin: bytes, program: str, *, netns_root: str = "",
) -> tuple[int, dict[str, Any] | None]:
    """Run one CNI request; returns the exit code and the JSON to print (if any).

    `netns_root`: the agent's worker serving a caller of another mount
    namespace passes "/proc/<caller pid>/root" (never from the request).
    """
    logs.configure()
    try:
        request = from_environ(environ, stdin, netns_root=netns_root)
        if request.command == "VERSION":
            return 0, versions.version_info()
        return 0, _handler_for(program)(request)
    except CNIError as err:
        logs.log.warning("%s failed: %s", environ.get("CNI_COMMAND", "?"), err)
        return 1, err.to_json(_requested_version(stdin))
    except Exception as err:
        import traceback

        where = logs.record_internal_error(
            f"internal error in {environ.get('CNI_COMMAND', '?')}: {err!r}",
            traceback.format_exc(),
        )
        internal = CNIError(
            Code.INTERNAL,
            f"internal error: {type(err).__name__}: {err}",
            f"traceback written to {where}",
        )
        return 1, internal.to_json(_requested_version(stdin))


def serve_text(
    environ: Mapping[str, str], stdin: bytes, program: str, *, netns_root: str = "",
) -> tuple[int, str]:
    """`serve`, with the JSON already rendered as the executable prints it."""
    code, payload = serve(environ, stdin, program, netns_root=netns_root)
    return code, json.dumps(payload) + "\n" if payload is not None else ""


def main(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, argv: list[str]) -> int:
    """`serve_text` over streams; the program is argv[0]'s name."""
    code, text = serve_text(environ, stdin.read(), os.path.basename(argv[0]) if argv else "calico-py")
    stdout.write(text)
    stdout.flush()
    return code
