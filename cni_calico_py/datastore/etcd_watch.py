"""The etcd backend's watch: one stream of etcd's HTTP gateway per kind."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from ..core.logs import log
from .errors import DatastoreUnavailable, ResyncNeeded
from .etcd_codec import Layout, b64, decode, range_end
from .model import WatchEvent


class EtcdWatch:
    """One gateway watch stream (`/v3/watch`: one JSON object per line) over a kind's directory."""

    def __init__(self, endpoints: list[str], timeout: float, layout: Layout, kind: str,
                 start_revision: int) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.layout = layout
        self.kind = kind
        self.start_revision = start_revision
        self._response: Any = None
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        import requests

        start = self.layout.directory(self.kind)
        request: dict[str, Any] = {"create_request": {"key": b64(start), "range_end": b64(range_end(start)),
                                      "start_revision": self.start_revision}}
        problems = []
        for endpoint in self.endpoints:
            url = urlsplit(endpoint)
            try:
                response = requests.post(f"{url.scheme}://{url.netloc}/v3/watch", json=request,
                                         stream=True, timeout=(self.timeout, None))
            except requests.RequestException as err:
                problems.append(f"{endpoint}: {type(err).__name__}")
                continue
            self._response = response
            if self._closed.is_set():
                return
            log.debug("watching %s from revision %d on %s", start, self.start_revision, endpoint)
            try:
                yield from self._batches(response.iter_content(chunk_size=None))
            except requests.RequestException as err:
                if not self._closed.is_set():
                    raise DatastoreUnavailable(f"the watch of {start} broke: {err}") from None
            finally:
                response.close()
            return
        raise DatastoreUnavailable(f"no etcd endpoint took the watch ({'; '.join(problems)})")

    def _batches(self, chunks: Iterable[bytes]) -> Iterator[list[WatchEvent]]:
        pending = b""
        for chunk in chunks:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    events = self._events(json.loads(line))
                    if events:
                        yield events

    def _events(self, message: dict[str, Any]) -> list[WatchEvent]:
        if "error" in message:
            raise DatastoreUnavailable(f"etcd ended the watch: {message['error'].get('message')}")
        result = message.get("result", {})
        if result.get("compact_revision") and result.get("canceled"):
            raise ResyncNeeded(f"etcd compacted its history to revision {result['compact_revision']}")
        if result.get("canceled"):
            raise ResyncNeeded(f"etcd cancelled the watch: {result.get('cancel_reason', 'no reason')}")
        found = []
        for event in result.get("events", []):
            kv = event.get("kv", {})
            key = self.layout.key_of(self.kind, base64.b64decode(kv.get("key", "")).decode())
            revision = str(kv.get("mod_revision", 0))
            if event.get("type") == "DELETE":
                found.append(WatchEvent(key, None, revision))
                continue
            value = decode(self.kind, key.name, base64.b64decode(kv.get("value", "")))
            if value is not None:
                found.append(WatchEvent(key, value, revision))
        return found

    def close(self) -> None:
        """Ends the iteration from another thread: the connection is shut down, which
        unblocks the watching thread's read; that thread closes it (closing it here could
        hand its descriptor to another connection while the read still uses it)."""
        self._closed.set()
        response = self._response
        if response is not None:
            with suppress(Exception):
                sock = socket.fromfd(response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
