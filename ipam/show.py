"""`calico-py ipam show`: who holds which address of the node's block.

Reads the store without its lock (every record is whole thanks to the atomic
rename), so it neither waits for nor delays a runtime's ADD or DEL.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from cni_calico_py.core.errors import CNIError

from . import config as ipam_config
from .choice import used
from .conflist import ConflistError, load_network
from .ranges import IpamConf
from .records import read_record, record_paths


def show(conf_path: str, as_json: bool, stdout: TextIO) -> int:
    try:
        conf = ipam_config.parse(load_network(conf_path))
    except ConflistError as err:
        print(f"calico-py ipam show: {err}", file=sys.stderr)
        return 1
    except CNIError as err:
        print(f"calico-py ipam show: {conf_path}: {err.msg}", file=sys.stderr)
        return 1
    rows = _rows(conf, time.time())
    blocks = [{"block": s.describe(), "rangeSet": s.index,
               "used": used(s, [r["address"] for r in rows]), "size": s.size}
              for s in conf.range_sets]
    if as_json:
        json.dump({"network": conf.network, "store": conf.store_dir, "blocks": blocks,
                   "reservations": [{**r, "address": str(r["address"])} for r in rows]},
                  stdout, indent=2)
        stdout.write("\n")
    else:
        _write_table(conf, blocks, rows, stdout)
    return 0


def _rows(conf: IpamConf, now: float) -> list[dict[str, Any]]:
    rows = []
    for address, path in record_paths(conf.store_dir):
        record = read_record(path)
        if record is None:
            continue  # released while we looked
        notes = []
        if record.damaged:
            notes.append(f"unreadable: {record.damaged}")
        netns_exists = os.path.exists(record.netns) if record.netns else None
        if netns_exists is False:
            notes.append("netns gone")
        if conf.range_set_of(address) is None:
            notes.append("outside the configured ranges")
        rows.append({
            "address": address,
            "containerID": record.container_id,
            "ifname": record.ifname,
            "netns": record.netns,
            "pod": record.pod or None,
            "ageSeconds": round(now - record.created) if record.created else None,
            "netnsExists": netns_exists,
            "notes": notes,
        })
    return rows


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _write_table(conf: IpamConf, blocks: list[dict[str, Any]],
                 rows: list[dict[str, Any]], out: TextIO) -> None:
    out.write(f"network {conf.network}, store {conf.store_dir}\n")
    for block in blocks:
        out.write(f"block {block['block']}: {block['used']} of {block['size']} addresses in use\n")
    if not rows:
        out.write("no reservations\n")
        return
    table = [("ADDRESS", "POD", "CONTAINER", "IFNAME", "NETNS", "AGE", "NOTE")]
    table += [(str(r["address"]), r["pod"] or "-", r["containerID"] or "?", r["ifname"] or "?",
               r["netns"] or "-", _age(r["ageSeconds"]), ", ".join(r["notes"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
