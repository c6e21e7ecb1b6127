"""The IPAM plugin's CNI handler: standalone `calico-py-ipam`, or in-process for calico-py."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from cni_calico_py.core import decoding, logs, results
from cni_calico_py.core.constants import MAIN_TABLE
from cni_calico_py.core.errors import CNIError, Code
from cni_calico_py.core.request import Request
from cni_calico_py.core.results import IPAddress

from . import borrow, node_state, pool
from . import config as ipam_config
from .blackhole import BirdBlackholes, NetlinkBlackholes, SharedBlackholes
from .disk_store import DiskStore
from .ranges import IpamConf
from .requested import Requested, requested_addresses
from .store import Reservation

GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
_CLAIM_ATTEMPTS = 3
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def validate(raw: dict[str, Any]) -> None:
    """Refuse a bad IPAM section (error 7) before the caller changes anything."""
    ipam_config.parse(raw)


def addresses_of(request: Request, raw: dict[str, Any]) -> list[IPAddress]:
    """The addresses this attachment holds, read under the store's lock."""
    conf = ipam_config.parse(raw)
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    return pool.addresses_of(store, pool.Attachment(request.container_id, request.ifname))


def execute(request: Request, raw: dict[str, Any]) -> results.Result | None:
    """ADD returns the abbreviated result; DEL/CHECK/GC/STATUS return None or raise."""
    conf = ipam_config.parse(raw)
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    routes = _blackholes(conf)
    who = pool.Attachment(request.container_id, request.ifname)
    logs.log.info("IPAM %s %s netns=%s store=%s", request.command, who, request.netns,
                  conf.store_dir)
    try:
        if request.command == "ADD":
            return _reserve(request, raw, conf, store, who, routes)[0]
        if request.command == "DEL":
            released = pool.release(store, conf, who, routes)
            logs.log.info("IPAM DEL %s released %s", who, released or "nothing")
        elif request.command == "CHECK":
            pool.check(store, conf, who, _previous_addresses(raw), routes)
        elif request.command == "GC":
            _gc(raw, conf, store, routes, _spare_routed_damaged(routes))
        elif request.command == "STATUS":
            pool.status(store, conf)
        else:
            raise CNIError(Code.INVALID_ENVIRONMENT,
                           f"CNI_COMMAND {request.command} is not an IPAM command")
        return None
    finally:
        routes.close()


def reserve(request: Request, raw: dict[str, Any]) -> tuple[results.Result, list[IPAddress]]:
    """ADD's abbreviated result, and the addresses this call reserved (not held before)."""
    conf = ipam_config.parse(raw)
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    routes = _blackholes(conf)
    try:
        return _reserve(request, raw, conf, store, pool.Attachment(request.container_id,
                                                                   request.ifname), routes)
    finally:
        routes.close()


def release_fresh(request: Request, raw: dict[str, Any], addresses: list[IPAddress]) -> None:
    """Undo `reserve`: free what that call reserved, keep what the attachment held before."""
    conf = ipam_config.parse(raw)
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    routes = _blackholes(conf)
    try:
        who = pool.Attachment(request.container_id, request.ifname)
        released = pool.release(store, conf, who, routes, only=addresses)
        logs.log.info("IPAM undo of ADD %s released %s", who, released or "nothing")
    finally:
        routes.close()


def _blackholes(conf: IpamConf) -> NetlinkBlackholes:
    """The node's blackhole routes: the IPAM's own, shared with the node's other stores
    that use the block, or in cluster BGP modes BIRD's."""
    if conf.node_state_file is not None:
        state = node_state.read(conf.node_state_file)
        if state is not None and state.bird_holds_blackholes:
            return BirdBlackholes(conf.store_dir, conf.lock_timeout)
    return SharedBlackholes(conf.store_dir, conf.lock_timeout)


def _reserve(
    request: Request, raw: dict[str, Any], conf: IpamConf, store: DiskStore,
    who: pool.Attachment, routes: NetlinkBlackholes,
) -> tuple[results.Result, list[IPAddress]]:
    requested = requested_addresses(request.args, raw)
    routes.open()  # import and connect before the lock, not while others wait
    chosen = _add(raw, conf, store, who, request.netns, requested, routes, _pod(request))
    logs.log.info("IPAM ADD %s got %s", who, ", ".join(str(a.address) for a in chosen))
    result = results.Result(
        ips=[results.IPConfig(
            address=ipaddress.ip_interface(f"{a.address}/{a.range.subnet.prefixlen}"),
            gateway=a.range.gateway,
        ) for a in chosen],
        routes=list(conf.routes),
    )
    return result, [a.address for a in chosen if a.fresh]


def _add(
    raw: dict[str, Any], conf: IpamConf, store: DiskStore, who: pool.Attachment, netns: str,
    requested: list[Requested], routes: NetlinkBlackholes, pod: str,
) -> list[pool.Allocation]:
    """pool.add, and in cluster mode, when every block of the node is full, claim another."""
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            return pool.add(store, conf, who, netns, requested, routes, pod)
        except CNIError as err:
            if err.code != Code.ADDRESS_EXHAUSTED or conf.node_state_file is None:
                raise
            borrow.claim_block(conf.node_state_file, conf.blocks, err)
            conf = ipam_config.parse(raw)
    # Other ADDs filled each new block before this one got an address from it.
    return pool.add(store, conf, who, netns, requested, routes, pod)


def _pod(request: Request) -> str:
    """The pod as kubelet names it in CNI_ARGS, "<namespace>/<name>"; "" when it does not."""
    if not (request.pod_namespace and request.pod_name):
        return ""
    # Kubernetes bounds both (63 and 253 characters); a longer one is not a pod's name.
    return f"{request.pod_namespace[:63]}/{request.pod_name[:253]}"


def handle(request: Request) -> dict[str, Any] | None:
    raw = decoding.decode_json(request.stdin)
    version = decoding.check_version(raw, request.command)
    _configure_logging(raw)
    result = execute(request, raw)
    return results.to_json(result, version) if result is not None else None


def _configure_logging(raw: dict[str, Any]) -> None:
    level = raw.get("log_level", "warning")
    path = raw.get("log_file_path")
    if not isinstance(level, str) or level.lower() not in _LOG_LEVELS:
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"invalid network config: log_level must be one of "
                       f"{', '.join(_LOG_LEVELS)}, got {level!r}", "log_level")
    if path is not None and (not isinstance(path, str) or not path or decoding.path_problem(path)):
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       "invalid network config: log_file_path must be a file path", "log_file_path")
    limits = {"log_file_max_size": logs.DEFAULT_MAX_SIZE_MB, "log_file_max_count": logs.DEFAULT_MAX_COUNT}
    for key in limits:
        value = raw.get(key, limits[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CNIError(Code.INVALID_NETWORK_CONFIG,
                           f"invalid network config: {key} must be a whole number of at least 1, "
                           f"got {value!r}", key)
        limits[key] = value
    logs.configure(level.lower(), path, limits["log_file_max_size"], limits["log_file_max_count"])


def valid_attachments(raw: dict[str, Any]) -> set[pool.Attachment]:
    """GC's list of attachments to keep, from either key libcni has used."""
    key = next((k for k in GC_KEYS if k in raw), None)
    if key is None:
        # Without the list every reservation would look stale: refuse rather than free all.
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"invalid network config: GC needs {GC_KEYS[0]} (the attachments to keep)",
                       GC_KEYS[0])
    value = raw[key]
    if not isinstance(value, list):
        raise CNIError(Code.INVALID_NETWORK_CONFIG,
                       f"invalid network config: {key} must be a list", key)
    kept = set()
    for index, item in enumerate(value):
        fields = [item.get(f) if isinstance(item, dict) else None for f in ("containerID", "ifname")]
        if not all(isinstance(f, str) and f for f in fields):
            raise CNIError(Code.INVALID_NETWORK_CONFIG,
                           f"invalid network config: {key}[{index}] must be an object with "
                           "non-empty containerID and ifname strings", f"{key}[{index}]")
        kept.add(pool.Attachment(str(fields[0]), str(fields[1])))
    return kept


def gc(raw: dict[str, Any], before_release: pool.BeforeRelease) -> list[IPAddress]:
    """GC in-process: the main plugin, which sees its pods, decides before each address is freed."""
    conf = ipam_config.parse(raw)
    store = DiskStore(conf.store_dir, conf.lock_timeout)
    routes = _blackholes(conf)
    logs.log.info("IPAM GC store=%s", conf.store_dir)
    try:
        return _gc(raw, conf, store, routes, before_release)
    finally:
        routes.close()


def _gc(
    raw: dict[str, Any], conf: IpamConf, store: DiskStore, routes: NetlinkBlackholes,
    before_release: pool.BeforeRelease,
) -> list[IPAddress]:
    released = pool.gc(store, conf, valid_attachments(raw), routes, before_release)
    logs.log.info("IPAM GC released %s", ", ".join(map(str, released)) or "nothing")
    return released


def _spare_routed_damaged(routes: NetlinkBlackholes) -> pool.BeforeRelease:
    """Standalone GC's rule: an unreadable record stays while the node routes its address
    to a veth. That is some pod's live interface, and whose cannot be told: freed,
    the address would be handed out again while still routed to that pod."""

    def may_release(address: IPAddress, record: Reservation) -> bool:
        if not record.damaged:
            return True
        try:
            veths = _veths_routing(routes, address)
        except OSError as err:
            logs.log.warning("GC cannot read the node's routes to %s (%s); releasing its "
                             "unreadable record (%s)", address, err, record.damaged)
            return True
        if veths:
            logs.log.warning("GC keeps %s: its record is unreadable (%s) and the node routes it "
                             "to %s, a live pod interface; delete that interface, or repair the "
                             "record, for GC to free the address",
                             address, record.damaged, ", ".join(veths))
            return False
        return True

    return may_release


def _veths_routing(routes: NetlinkBlackholes, address: IPAddress) -> list[str]:
    """The veths the node's main table routes `address` (as a /32 or /128) through."""
    rtnl = routes.open()
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    names = []
    for route in rtnl.routes(family, table=MAIN_TABLE):
        oif = route.get("oif")
        if route.get("dst") != str(address) or route["dst_len"] != address.max_prefixlen or not oif:
            continue
        if (route.get("table") or MAIN_TABLE) != MAIN_TABLE:
            continue
        link = rtnl.link(int(oif))
        info = link.get("linkinfo")
        if info is not None and info.get("kind") == "veth":
            names.append(str(link.get("ifname")))
    return names


def _previous_addresses(raw: dict[str, Any]) -> list[results.IPAddress]:
    previous = raw.get("prevResult")
    if not previous:
        return []
    return [ip.address.ip for ip in results.from_json(previous).ips]
