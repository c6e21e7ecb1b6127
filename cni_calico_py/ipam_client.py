"""Calling the IPAM plugin named in `ipam.type`.

Our own IPAM runs in-process (same code as the standalone `calico-py-ipam`);
any other plugin is executed from CNI_PATH as the spec describes, with the
same stdin, and its result or error code carried through unchanged. The
plugin itself, by its name or by a link to its program, is refused (error 7).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .core import results
from .core.constants import IPAM_PLUGIN_NAME, PLUGIN_NAME
from .core.errors import CNIError, Code
from .core.request import Request

IN_PROCESS_TYPE = IPAM_PLUGIN_NAME
# An IPAM plugin that neither answers nor exits within this bound is an error.
EXEC_TIMEOUT_SECONDS = 120


def find_plugin(ipam_type: str, search_path: tuple[str, ...]) -> str:
    if "/" in ipam_type:
        raise CNIError(
            Code.INVALID_NETWORK_CONFIG,
            f"invalid network config: ipam.type {ipam_type!r} must be a plugin name, not a path",
            "ipam.type",
        )
    if ipam_type == PLUGIN_NAME:
        raise _names_this_plugin(ipam_type, "")
    for directory in search_path:
        candidate = os.path.join(directory, ipam_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            # Our IPAM's name is the one other name this program answers to as an IPAM.
            if ipam_type != IPAM_PLUGIN_NAME and _is_this_program(candidate):
                raise _names_this_plugin(ipam_type, candidate)
            return candidate
    raise CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"invalid network config: ipam.type {ipam_type!r} was not found in CNI_PATH "
        f"({':'.join(search_path) or 'empty'})",
        "ipam.type",
    )


def _names_this_plugin(ipam_type: str, path: str) -> CNIError:
    """The plugin as its own IPAM runs itself again with the same config.

    An ADD, DEL or CHECK then waits for its own attachment lock (120 s) and
    answers 11; a GC or STATUS, which takes no such lock, runs itself without end.
    """
    found = f" ({path} is this plugin's own program)" if path else ""
    return CNIError(
        Code.INVALID_NETWORK_CONFIG,
        f"invalid network config: ipam.type {ipam_type!r} names this plugin itself{found}, "
        f"not an IPAM plugin; use {IPAM_PLUGIN_NAME!r} for the built-in IPAM",
        "ipam.type",
    )


def _is_this_program(path: str) -> bool:
    """Whether `path` runs this program: under any name but its IPAM's, that is the plugin again.

    The installed build is one directory: its program, and the launcher that
    calico-py and calico-py-ipam link to. A Python entry point is a script
    of its own, compared as a file (a symlink or a hard link to it is it).
    """
    try:
        found = os.stat(path)
        if getattr(sys, "frozen", False):
            home = os.path.dirname(os.path.realpath(sys.executable))
            if os.path.dirname(os.path.realpath(path)) == home:
                return True
        program = os.stat(sys.argv[0]) if sys.argv and sys.argv[0] else None
    except OSError:  # a program run by a name not resolvable here: none to compare
        return False
    return program is not None and (program.st_dev, program.st_ino) == (found.st_dev, found.st_ino)


def preflight(request: Request, raw: dict[str, Any], ipam_type: str) -> None:
    """Refuse early a config the IPAM cannot serve: its plugin missing or this one, its section invalid."""
    if ipam_type == IN_PROCESS_TYPE:
        from ipam.plugin import validate

        validate(raw)
    else:
        find_plugin(ipam_type, request.path)


def call(command: str, request: Request, raw: dict[str, Any], ipam_type: str) -> results.Result | None:
    """Run `command` of the IPAM plugin; returns its result for ADD, else None."""
    sub_request = replace(request, command=command)
    if ipam_type == IN_PROCESS_TYPE:
        from ipam.plugin import execute

        return execute(sub_request, raw)
    return _exec(find_plugin(ipam_type, request.path), sub_request, raw)


def reserve(
    request: Request, raw: dict[str, Any], ipam_type: str,
) -> tuple[results.Result | None, Callable[[], None]]:
    """IPAM ADD, and the undo of exactly that ADD.

    Ours knows which addresses the call reserved, so its undo leaves those
    an earlier ADD of the attachment holds; a foreign plugin has no such
    verb, and its undo is a DEL of the attachment.
    """
    if ipam_type == IN_PROCESS_TYPE:
        from ipam.plugin import release_fresh
        from ipam.plugin import reserve as reserve_in_process

        ours, fresh = reserve_in_process(replace(request, command="ADD"), raw)
        return ours, lambda: release_fresh(request, raw, fresh)
    foreign = call("ADD", request, raw, ipam_type)
    return foreign, lambda: _discard(call("DEL", request, raw, ipam_type))


def _discard(_: object) -> None:
    return None


def addresses_of(request: Request, raw: dict[str, Any], ipam_type: str) -> list[results.IPAddress]:
    """The addresses the attachment still holds, where the IPAM can say.

    Only ours can: a foreign plugin has no verb for it, and a prevResult
    may be older than the addresses it names.
    """
    if ipam_type != IN_PROCESS_TYPE:
        return []
    from ipam.plugin import addresses_of as held

    return held(request, raw)


def _exec(executable: str, request: Request, raw: dict[str, Any]) -> results.Result | None:
    import subprocess  # only for a foreign IPAM plugin; ours runs in-process

    env = dict(os.environ)
    env.update(
        CNI_COMMAND=request.command,
        CNI_CONTAINERID=request.container_id,
        CNI_NETNS=request.netns,
        CNI_IFNAME=request.ifname,
        CNI_ARGS=";".join(f"{k}={v}" for k, v in request.args.items()),
        CNI_PATH=":".join(request.path),
    )
    try:
        proc = subprocess.run(
            [executable], input=json.dumps(raw).encode(), env=env,
            capture_output=True, timeout=EXEC_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise CNIError(
            Code.TRY_AGAIN_LATER,
            f"IPAM plugin {executable} did not answer {request.command} "
            f"within {EXEC_TIMEOUT_SECONDS} s",
        ) from None
    except OSError as err:
        raise CNIError(Code.IO_FAILURE, f"cannot run IPAM plugin {executable}: {err}") from None
    output = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise _plugin_error(executable, request.command, output, proc.stderr)
    if request.command != "ADD":
        return None
    try:
        return results.from_json(json.loads(output), f"result of IPAM plugin {executable}")
    except (ValueError, RecursionError):
        raise CNIError(
            Code.IPAM_FAILURE,
            f"IPAM plugin {executable} printed something that is not a JSON result",
            output[:200],
        ) from None


def _plugin_error(executable: str, command: str, output: str, stderr: bytes) -> CNIError:
    try:
        payload = json.loads(output)
        return CNIError(
            int(payload["code"]),
            f"IPAM plugin {os.path.basename(executable)}: {payload.get('msg', '')}",
            str(payload.get("details", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return CNIError(
            Code.IPAM_FAILURE,
            f"IPAM plugin {executable} failed {command} without a CNI error",
            (output or stderr.decode(errors="replace"))[:300],
        )


def gc(
    request: Request, raw: dict[str, Any], ipam_type: str,
    before_release: Callable[[results.IPAddress, Any], bool],
) -> None:
    """IPAM GC; ours asks `before_release(address, reservation)` before freeing each address.

    The callback runs under the store's lock and says whether the address may
    go. A foreign plugin has no such hook: it gets a plain GC.
    """
    if ipam_type != IN_PROCESS_TYPE:
        call("GC", request, raw, ipam_type)
        return
    from ipam.plugin import gc as gc_in_process

    gc_in_process(raw, before_release)


class Ipam(Protocol):
    """The IPAM as the verbs see it, for one attachment."""

    def reserve(self) -> tuple[results.Result | None, Callable[[], None]]:
        """ADD, and the undo of exactly what it reserved."""

    def release(self) -> None:
        """DEL of the attachment."""

    def addresses_of(self) -> list[results.IPAddress]: ...

    def check(self) -> None: ...

    def gc(self, before_release: Callable[[results.IPAddress, Any], bool]) -> None:
        """Free stale addresses, asking `before_release` first where the IPAM can."""

    def status(self) -> None: ...


@dataclass(frozen=True)
class IpamClient:
    """The IPAM plugin named in `ipam.type`, in-process or executed, for one request."""

    request: Request
    raw: dict[str, Any]
    ipam_type: str

    def reserve(self) -> tuple[results.Result | None, Callable[[], None]]:
        return reserve(self.request, self.raw, self.ipam_type)

    def release(self) -> None:
        call("DEL", self.request, self.raw, self.ipam_type)

    def addresses_of(self) -> list[results.IPAddress]:
        return addresses_of(self.request, self.raw, self.ipam_type)

    def check(self) -> None:
        call("CHECK", self.request, self.raw, self.ipam_type)

    def gc(self, before_release: Callable[[results.IPAddress, Any], bool]) -> None:
        gc(self.request, self.raw, self.ipam_type, before_release)

    def status(self) -> None:
        call("STATUS", self.request, self.raw, self.ipam_type)
