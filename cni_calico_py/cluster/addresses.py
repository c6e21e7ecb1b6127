"""Wakes the node daemon when an address of the node changes (rtnetlink's address group).

The daemon then detects the node IP again at once, instead of polling for it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from ..core.logs import log

_NETLINK_ROUTE = 0
_RTMGRP_IPV4_IFADDR = 0x10


class AddressMonitor:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   _NETLINK_ROUTE)
        self._sock.bind((0, _RTMGRP_IPV4_IFADDR))

    def start(self) -> None:
        threading.Thread(target=self._run, name="addresses", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self._sock.recv(65536)
            except OSError as err:
                # ENOBUFS: notifications were lost; a change may be among them.
                log.debug("address notifications: %s", err)
            self.on_change()
