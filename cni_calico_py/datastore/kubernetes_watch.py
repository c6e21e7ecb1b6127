"""The Kubernetes backend's watch of one kind, resumed from the last version it saw."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

import httpx

from ..core.logs import log
from .errors import DatastoreUnavailable, ResyncNeeded
from .kubernetes_objects import decode
from .model import NODE, Key, WatchEvent

# The server ends a watch after this long; it is resumed from the last version seen.
WATCH_SECONDS = 300


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text.strip()[:200]


def error_reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason") or "")
    except ValueError:
        return ""



class KubernetesWatch:
    """A watch of one kind, resumed from the last version seen whenever the server ends it."""

    def __init__(self, http: httpx.Client, collection: str, kind: str, revision: str) -> None:
        # A client of its own: only the watching thread uses it (close() shuts it down).
        self._http = http
        self.collection = collection
        self.kind = kind
        self.revision = revision
        self._closed = threading.Event()
        self._reply: httpx.Response | None = None

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        try:
            while not self._closed.is_set():
                yield from self._once()
        finally:
            self._http.close()

    def _once(self) -> Iterator[list[WatchEvent]]:
        """One watch request, until the server ends it."""
        params = {"watch": "1", "resourceVersion": self.revision, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SECONDS)}
        try:
            with self._http.stream("GET", self.collection, params=params) as reply:
                self._reply = reply
                if self._closed.is_set():
                    return
                if reply.status_code == 410:
                    raise ResyncNeeded(f"version {self.revision} of {self.kind} is gone")
                if reply.status_code >= 300:
                    reply.read()
                    raise DatastoreUnavailable(f"the watch of {self.kind} was refused: "
                                               f"{reply.status_code} {error_message(reply)}")
                for line in reply.iter_lines():
                    events = self._events(line)
                    if events:
                        yield events
        except httpx.HTTPError as err:
            if self._closed.is_set():
                return
            raise DatastoreUnavailable(f"the watch of {self.kind} broke: {err}") from None
        finally:
            self._reply = None

    def _events(self, line: str) -> list[WatchEvent]:
        if not line.strip():
            return []
        message = json.loads(line)
        kind, obj = message.get("type"), message.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise ResyncNeeded(f"version {self.revision} of {self.kind} is gone: {obj.get('message')}")
            raise DatastoreUnavailable(f"the watch of {self.kind} failed: {obj.get('message')}")
        version = str((obj.get("metadata") or {}).get("resourceVersion") or self.revision)
        self.revision = version
        if kind == "BOOKMARK":
            return []
        name = obj["metadata"]["name"]
        value = None if kind == "DELETED" else decode(self.kind, obj)
        # A Node without the annotations is no registered node: a deletion (for one that
        # never had them, a deletion of nothing).
        if self.kind != NODE and value is None and kind != "DELETED":
            log.warning("skipping %s %s: not a value this version reads", self.kind, name)
            return []
        return [WatchEvent(Key(self.kind, name), value, version)]

    def close(self) -> None:
        """Ends the iteration from another thread. The connection is shut down, never
        closed, here: closing it would free its descriptor while the watching thread still
        reads it, and the next connection opened (another watch's) would get that number
        and have its TLS records read by both. The watching thread closes its client."""
        self._closed.set()
        reply = self._reply
        stream = reply.extensions.get("network_stream") if reply is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with suppress(OSError):
                unblock = socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM)
                unblock.shutdown(socket.SHUT_RDWR)
                unblock.close()
