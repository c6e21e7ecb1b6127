"""Follows the cluster's prefix in etcd with one watch, so changes arrive in milliseconds.

The watch runs in its own thread over etcd's HTTP gateway (`/v3/watch`, a
stream of JSON objects, one per line) and hands each batch of events to a
callback. It ends, and says why, when etcd goes away, cancels it, or has
compacted the revision it was to start from; the daemon then reads the whole
prefix again and starts a new watch after that read.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from ..core.logs import log
from .datastore import Event, range_end

OnEvents = Callable[[list[Event]], None]
OnEnd = Callable[[str], None]


class WatchEnded(Exception):
    """etcd cancelled the watch or sent something that is not a watch response."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parse_stream(chunks: Iterable[bytes], prefix: str) -> Iterator[list[Event]]:
    """The events of each watch response, from the stream's chunks (a line may span chunks)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                events = _events(json.loads(line), prefix)
                if events:
                    yield events


def _events(message: dict[str, Any], prefix: str) -> list[Event]:
    if "error" in message:
        raise WatchEnded(f"etcd ended the watch: {message['error'].get('message', message)}")
    result = message.get("result", {})
    if result.get("canceled") or result.get("compact_revision"):
        compacted = result.get("compact_revision")
        why = f"history compacted to revision {compacted}" if compacted else result.get(
            "cancel_reason", "no reason given")
        raise WatchEnded(f"etcd cancelled the watch: {why}")
    found = []
    for event in result.get("events", []):
        kv = event.get("kv", {})
        key = base64.b64decode(kv.get("key", "")).decode()
        if not key.startswith(prefix):
            continue
        value = None if event.get("type") == "DELETE" else base64.b64decode(kv.get("value", ""))
        found.append(Event(key[len(prefix):], value, int(kv.get("mod_revision", 0))))
    return found


class Watch:
    """A watch of every key under `prefix` from `start_revision` on, in a daemon thread."""

    def __init__(self, endpoints: list[str], prefix: str, start_revision: int, connect_timeout: float,
                 on_events: OnEvents, on_end: OnEnd) -> None:
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/") + "/"
        self.start_revision = start_revision
        self.connect_timeout = connect_timeout
        self.on_events = on_events
        self.on_end = on_end
        self._response: Any = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            # Unblocks the read in the watch thread.
            with suppress(Exception):
                sock = socket.fromfd(response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with suppress(Exception):
                response.close()

    def _run(self) -> None:
        reason = "the watch stream ended"
        try:
            self._follow()
        except WatchEnded as err:
            reason = str(err)
        except Exception as err:  # connection refused or reset, bad JSON: read everything again
            reason = f"the watch failed: {type(err).__name__}: {err}"
        if not self._stopped.is_set():
            self.on_end(reason)

    def _follow(self) -> None:
        import requests

        request: dict[str, Any] = {"create_request": {
            "key": _b64(self.prefix), "range_end": _b64(range_end(self.prefix)),
            "start_revision": self.start_revision}}
        problems = []
        for endpoint in self.endpoints:
            url = urlsplit(endpoint)
            try:
                response = requests.post(f"{url.scheme}://{url.netloc}/v3/watch", json=request,
                                         stream=True, timeout=(self.connect_timeout, None))
            except requests.RequestException as err:
                problems.append(f"{endpoint}: {type(err).__name__}")
                continue
            self._response = response
            if self._stopped.is_set():
                return
            log.debug("watching %s from revision %d on %s", self.prefix, self.start_revision, endpoint)
            for events in parse_stream(response.iter_content(chunk_size=None), self.prefix):
                self.on_events(events)
            return
        raise WatchEnded(f"no etcd endpoint took the watch ({'; '.join(problems)})")
