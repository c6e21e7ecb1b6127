"""The record files of the disk store: their format, and which names in the directory are records.

A record is `<dataDir>/<network name>/<address>` (the address in canonical
text form): JSON `{"containerID", "ifname", "netns", "created"}` and, when the
runtime named the pod, `"pod": "<namespace>/<name>"`; or
host-local's `containerID\\r\\nifname`. Reading needs no lock: every record
is whole, thanks to the rename that writes it (`calico-py ipam show` relies on it).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator

from cni_calico_py.core.results import IPAddress

from .store import Reservation

LOCK_NAME = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."


def record_text(reservation: Reservation) -> str:
    """A reservation as the JSON text of its record file."""
    record = {
        "containerID": reservation.container_id,
        "ifname": reservation.ifname,
        "netns": reservation.netns,
        "created": reservation.created,
    }
    if reservation.pod:
        record["pod"] = reservation.pod
    return json.dumps(record) + "\n"


def read_record(path: str) -> Reservation | None:
    """A record file as a Reservation (`damaged` when unreadable), None when it is gone."""
    try:
        with open(path, "rb") as file:
            data = file.read()
            created = os.fstat(file.fileno()).st_mtime
    except FileNotFoundError:
        return None
    except OSError as err:
        return Reservation("", "", damaged=f"cannot read: {err.strerror}")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return Reservation("", "", created=created, damaged="record is not UTF-8 text")
    if text.lstrip().startswith("{"):
        return _json_record(text, created)
    # host-local's format: containerID CRLF ifname
    parts = text.strip().split("\r\n")
    if len(parts) == 2 and all(parts):
        return Reservation(parts[0], parts[1], created=created)
    return Reservation("", "", created=created, damaged=f"unrecognised record {text[:60]!r}")


def _json_record(text: str, created: float) -> Reservation:
    try:
        data = json.loads(text)
        container_id, ifname = data["containerID"], data["ifname"]
        netns = data.get("netns", "")
        pod = data.get("pod", "")
        when = data.get("created", created)
        if not all(isinstance(v, str) for v in (container_id, ifname, netns, pod)) or not (
            container_id and ifname and isinstance(when, int | float)
        ):
            raise ValueError("fields have the wrong type")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return Reservation("", "", created=created, damaged=f"unreadable record: {err}")
    return Reservation(container_id, ifname, netns, float(when), pod=pod)


def _address_named(name: str) -> IPAddress | None:
    if name.startswith(".") or name == LOCK_NAME or name.startswith(LAST_RESERVED_PREFIX):
        return None
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    # Only the canonical spelling is ours: two names for one address would be two records.
    return address if str(address) == name else None


def listdir(directory: str) -> list[str]:
    """The names in the store directory; none while it does not exist."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def record_paths(directory: str) -> Iterator[tuple[IPAddress, str]]:
    """Record files without taking the lock: each one is complete thanks to the rename."""
    named = [(a, n) for n in listdir(directory) if (a := _address_named(n)) is not None]
    for address, name in sorted(named, key=lambda item: (item[0].version, int(item[0]))):
        yield address, os.path.join(directory, name)
