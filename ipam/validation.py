"""Checking the `ipam` section: host-local compatible keys, resolved to address objects.

Pydantic checks the shape; the address rules (host bits, ranges inside their
subnet, no overlaps) are checked afterwards so each problem can name its exact
field, e.g. `ipam.ranges[0][1].rangeStart`. Imported only for a section not
seen before (see cni_calico_py/core/verdicts.py); config.py is the way in.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cni_calico_py.core import results
from cni_calico_py.core.decoding import field_path, path_problem
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.results import IPAddress, IPNetwork

from .node_state import DEFAULT_STATE_FILE
from .ranges import IpamConf, Range, RangeSet

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_LOCK_TIMEOUT = 10.0
# Below the agent's worker deadline (300 s), itself below its forwarding deadline (330 s).
MAX_LOCK_TIMEOUT = 120.0
# The spec's rule for network names; the name also becomes a directory name.
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class _Closed(BaseModel):
    # Small fixed objects: a misspelt key (`rangestart`) must not pass silently.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class RangeModel(_Closed):
    subnet: str
    range_start: str | None = Field(default=None, alias="rangeStart")
    range_end: str | None = Field(default=None, alias="rangeEnd")
    gateway: str | None = None


class RouteModel(_Closed):
    dst: str
    gw: str | None = None


class IpamModel(BaseModel):
    # The section may carry keys meant for other IPAM plugins; ignore them as host-local does.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    type: str = Field(min_length=1)
    subnet: str | None = None
    range_start: str | None = Field(default=None, alias="rangeStart")
    range_end: str | None = Field(default=None, alias="rangeEnd")
    gateway: str | None = None
    ranges: list[list[RangeModel]] = Field(default_factory=list)
    data_dir: str = Field(default=DEFAULT_DATA_DIR, alias="dataDir", min_length=1)
    routes: list[RouteModel] = Field(default_factory=list)
    lock_timeout: float = Field(default=DEFAULT_LOCK_TIMEOUT, alias="lockTimeoutSeconds",
                                gt=0, le=MAX_LOCK_TIMEOUT)
    # Read only when the section names no range: the node daemon's blocks.
    node_state_file: str = Field(default=DEFAULT_STATE_FILE, alias="nodeStateFile", min_length=1)

    @field_validator("data_dir", "node_state_file")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        problem = path_problem(value) or ("" if value.startswith("/") else "must be an absolute path")
        if problem:
            raise ValueError(problem)
        return value


class _Problems:
    """Collects every problem so one error names them all."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, problem: str) -> None:
        self.items.append((path, problem))

    def error(self) -> CNIError:
        return CNIError(
            Code.INVALID_NETWORK_CONFIG,
            "invalid network config: " + "; ".join(f"{p}: {m}" for p, m in self.items),
            ", ".join(p for p, _ in self.items),
        )


def parse_static(raw: dict[str, Any]) -> IpamConf:
    """The resolved IPAM config, or error 7 naming each bad field.

    In cluster mode (no subnet or ranges) the range sets are left empty: the
    node's blocks change while the config does not, and are read per request.
    """
    problems = _Problems()
    name = raw.get("name")
    if not isinstance(name, str) or not _NETWORK_NAME.fullmatch(name):
        problems.add("name", "must start with a letter or digit and hold only letters, digits, "
                     f"'_', '.' and '-' (it names the store directory); got {json.dumps(name)}")
    section = raw.get("ipam")
    if not isinstance(section, dict):
        problems.add("ipam", "must be an object with the IPAM plugin's settings")
        raise problems.error()
    try:
        model = IpamModel.model_validate(section)
    except ValidationError as err:
        for item in err.errors():
            message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
            if item["type"] != "missing":
                message += f" (got {json.dumps(item.get('input'), default=str)[:80]})"
            problems.add(field_path("ipam", item["loc"]), message)
        raise problems.error() from None
    # Cluster mode only when no range is given at all: `"subnet": ""` is a
    # mistake to name, not a request for the node daemon's blocks.
    given = (model.subnet, model.range_start, model.range_end, model.gateway)
    cluster = all(value is None for value in given) and not model.ranges
    range_sets = () if cluster else _range_sets(model, problems)
    routes = tuple(_route(r, i, problems) for i, r in enumerate(model.routes))
    if problems.items:
        raise problems.error()
    return IpamConf(
        network=str(name),
        range_sets=range_sets,
        data_dir=model.data_dir,
        routes=tuple(r for r in routes if r is not None),
        lock_timeout=model.lock_timeout,
        node_state_file=model.node_state_file if cluster else None,
    )


def _range_sets(model: IpamModel, problems: _Problems) -> tuple[RangeSet, ...]:
    raw_sets: list[tuple[str, list[tuple[RangeModel, str]]]] = []
    # host-local's single-range form (`subnet` at the top) becomes the first range set.
    if model.subnet is not None:
        top = RangeModel(subnet=model.subnet, range_start=model.range_start,
                         range_end=model.range_end, gateway=model.gateway)
        raw_sets.append(("ipam", [(top, "ipam")]))
    elif model.range_start is not None or model.range_end is not None or model.gateway is not None:
        problems.add("ipam.subnet", "is required when ipam.rangeStart, rangeEnd or gateway is set")
    for i, models in enumerate(model.ranges):
        if not models:
            problems.add(f"ipam.ranges[{i}]", "is empty: a range set needs at least one range")
        raw_sets.append((f"ipam.ranges[{i}]",
                         [(r, f"ipam.ranges[{i}][{j}]") for j, r in enumerate(models)]))
    sets = []
    for index, (set_path, entries) in enumerate(raw_sets):
        parsed = [r for r in (_range(m, p, problems) for m, p in entries) if r is not None]
        if len({r.subnet.version for r in parsed}) > 1:
            problems.add(set_path, "mixes IPv4 and IPv6 ranges: put each family in its own "
                         "range set")
        sets.append(RangeSet(index=index, ranges=tuple(parsed)))
    _check_overlaps([r for s in sets for r in s.ranges], problems)
    return tuple(sets)


def _key(path: str, name: str) -> str:
    return f"{path}.{name}"


def _range(model: RangeModel, path: str, problems: _Problems) -> Range | None:
    subnet = _subnet(model.subnet, _key(path, "subnet"), problems)
    if subnet is None:
        return None
    first = _address(model.range_start, _key(path, "rangeStart"), subnet, problems)
    last = _address(model.range_end, _key(path, "rangeEnd"), subnet, problems)
    gateway = _address(model.gateway, _key(path, "gateway"), None, problems, subnet.version)
    if (model.range_start is not None and first is None) or (
        model.range_end is not None and last is None
    ):
        return None
    start = first if first is not None else subnet[0]
    end = last if last is not None else subnet[-1]
    if int(start) > int(end):
        problems.add(_key(path, "rangeStart"), f"{start} is after rangeEnd {end}")
        return None
    return Range(subnet=subnet, first=start, last=end, gateway=gateway, path=path)


def _subnet(text: str, path: str, problems: _Problems) -> IPNetwork | None:
    try:
        lenient = ipaddress.ip_network(text, strict=False)
    except ValueError:
        problems.add(path, f"{text!r} is not a subnet in CIDR notation, e.g. 192.168.97.0/26")
        return None
    if "/" not in text:
        problems.add(path, f"{text!r} has no prefix length: write the block in CIDR notation, "
                     "e.g. 192.168.97.0/26")
    elif ipaddress.ip_address(text.split("/")[0]) != lenient.network_address:
        problems.add(path, f"{text!r} has host bits set: did you mean {lenient}?")
    else:
        return lenient
    return None


def _address(
    text: str | None, path: str, subnet: IPNetwork | None, problems: _Problems,
    version: int | None = None,
) -> IPAddress | None:
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        problems.add(path, f"{text!r} is not an IP address")
        return None
    if subnet is not None and address not in subnet:
        problems.add(path, f"{address} is outside the range's subnet {subnet}")
        return None
    if version is not None and address.version != version:
        problems.add(path, f"{address} is IPv{address.version} but the subnet is IPv{version}")
        return None
    return address


def _check_overlaps(ranges: list[Range], problems: _Problems) -> None:
    for i, later in enumerate(ranges):
        for earlier in ranges[:i]:
            if later.first.version == earlier.first.version and (
                int(later.first) <= int(earlier.last) and int(earlier.first) <= int(later.last)
            ):
                problems.add(_where(later), f"{later.first}-{later.last} overlaps {_where(earlier)} "
                             f"({earlier.first}-{earlier.last})")


def _where(r: Range) -> str:
    return "ipam.subnet" if r.path == "ipam" else r.path


def _route(model: RouteModel, index: int, problems: _Problems) -> results.Route | None:
    path = f"ipam.routes[{index}]"
    try:
        dst = ipaddress.ip_network(model.dst)
    except ValueError:
        problems.add(f"{path}.dst", f"{model.dst!r} is not a network in CIDR notation "
                     "without host bits")
        return None
    gw = None
    if model.gw is not None:
        gw = _address(model.gw, f"{path}.gw", None, problems, dst.version)
        if gw is None:
            return None
    return results.Route(dst=dst, gw=gw)
