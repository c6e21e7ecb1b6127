"""The network config: each section defined once, as the plain dataclass the commands get.

A field's checks are its metadata: "alias" (the key a config writes, the
field's own name being accepted too), pydantic's bounds ("ge", "le",
"min_length", "max_length"), "before"/"after" (functions that check or
normalise the value), "section" (a nested section, checked as that class)
and "per_request" (set by the runtime for each request, so never
remembered). A section's EXTRA says what its unknown keys do.

Validating with pydantic costs more start-up than an ADD's own work (~75 ms
to import it and build models), so it runs only for a config not seen
before: `_model` builds the pydantic models from these dataclasses, and the
normalised values are remembered (core/verdicts.py) under exactly the keys
the models read (`_read`). Every later request rebuilds the dataclasses from
those values and never imports pydantic. The dataclasses are the one
definition of the fields; the pydantic models are derived from them, never
written by hand, so the two cannot drift apart.

Keys follow the spec's camelCase where the spec names them and Calico's
snake_case where operators already write them (`log_level`, `mtu`, ...).
Strict: a JSON type other than the field's is an error, never converted
("mtu": "1500", "allow_ip_forwarding": 1), as Go's decoder in Calico has it.
prevResult is read whole on every request instead, so a malformed one is
refused before the node is touched.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .core import logs, verdicts
from .core.constants import DEFAULT_VETH_PREFIX
from .core.decoding import path_problem

if TYPE_CHECKING:
    from pydantic import BaseModel

DEFAULT_MTU_FILE = "/var/lib/calico/mtu"
# IFNAMSIZ leaves 15 characters; the hash takes 11 of them.
VETH_HASH_LEN = 11
MAX_VETH_PREFIX = 15 - VETH_HASH_LEN
# What the remembered verdict depends on besides the config: this module and its helpers.
VALIDATOR_CODE = ("cni_calico_py.config", "cni_calico_py.core.decoding")

# The host veth's name starts with it: characters any interface name may hold.
_VETH_PREFIX = re.compile(r"[A-Za-z0-9_.\-]+")


def _addresses(value: list[str] | None) -> list[str] | None:
    for item in value or []:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"{item[:60]!r} is not an IPv4 or IPv6 address") from None
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _usable_path(value: str | None) -> str | None:
    problem = path_problem(value) if value is not None else None
    if problem:
        raise ValueError(problem)
    return value


def _interface_characters(value: str) -> str:
    if not _VETH_PREFIX.fullmatch(value):
        raise ValueError(f"{value!r} may hold only letters, digits, '_', '.' and '-' "
                         "(it starts every host interface name)")
    return value


@dataclass(frozen=True)
class ContainerSettings:
    allow_ip_forwarding: bool = False


@dataclass(frozen=True)
class IpamSection:
    """Only the IPAM plugin's name is the main plugin's business; the rest is its own."""

    EXTRA: ClassVar[str] = "allow"
    type: str = field(metadata={"min_length": 1})


@dataclass(frozen=True)
class Dns:
    """The spec's DNS settings; a misspelt key is refused rather than ignored.

    Only checked: NetConf.dns holds the keys the config gave, as given.
    """

    EXTRA: ClassVar[str] = "forbid"
    nameservers: list[str] | None = field(default=None, metadata={"after": _addresses})
    domain: str | None = None
    search: list[str] | None = None
    options: list[str] | None = None


@dataclass(frozen=True)
class NetConf:
    cni_version: str = field(metadata={"alias": "cniVersion"})
    name: str = field(metadata={"min_length": 1})
    type: str = field(metadata={"min_length": 1})
    ipam: IpamSection = field(metadata={"section": IpamSection})
    mtu: int | None = field(default=None, metadata={"ge": 68, "le": 65535})
    mtu_file_path: str = field(default=DEFAULT_MTU_FILE, metadata={"after": _usable_path})
    veth_prefix: str = field(default=DEFAULT_VETH_PREFIX, metadata={
        "min_length": 1, "max_length": MAX_VETH_PREFIX, "after": _interface_characters})
    log_level: Literal["debug", "info", "warning", "error", "critical"] = field(
        default="warning", metadata={"before": _lower})
    log_file_path: str | None = field(default=None, metadata={"after": _usable_path})
    # Calico's keys: the log file is rotated at this many MB, keeping this many old files.
    log_file_max_size: int = field(default=logs.DEFAULT_MAX_SIZE_MB, metadata={"ge": 1, "le": 10240})
    log_file_max_count: int = field(default=logs.DEFAULT_MAX_COUNT, metadata={"ge": 1, "le": 1000})
    container_settings: ContainerSettings = field(
        default=ContainerSettings(), metadata={"section": ContainerSettings})
    nodename: str | None = None
    dns: dict[str, Any] | None = field(default=None, metadata={"section": Dns})
    runtime_config: dict[str, Any] = field(
        default_factory=dict, metadata={"alias": "runtimeConfig", "per_request": True})
    args: dict[str, Any] = field(default_factory=dict, metadata={"per_request": True})
    prev_result: dict[str, Any] | None = field(
        default=None, metadata={"alias": "prevResult", "per_request": True})


PER_REQUEST_FIELDS = frozenset(f.name for f in fields(NetConf) if f.metadata.get("per_request"))


def parse_netconf(raw: dict[str, Any]) -> NetConf:
    """The checked config, or error 7 naming each bad field."""
    stable = _read(NetConf, raw)

    def validate() -> dict[str, Any]:
        return validate_netconf(stable)

    values = verdicts.remembered("netconf", stable, validate, code=VALIDATOR_CODE)
    prev_result = raw.get("prevResult")
    if prev_result:
        # Never remembered, so checked on every request, before anything changes.
        from .core.results import from_json

        from_json(prev_result)
    return NetConf(**values | {
        "ipam": IpamSection(**values["ipam"]),
        "container_settings": ContainerSettings(**values.get("container_settings", {})),
        "runtime_config": raw.get("runtimeConfig") or {},
        "args": raw.get("args") or {},
        "prev_result": prev_result,
    })


def _keys(item: Any) -> tuple[str, ...]:
    alias = item.metadata.get("alias")
    return (alias, item.name) if alias else (item.name,)


def _read(section: type, value: Any) -> Any:
    """The part of `value` that validating it as `section` reads.

    Left out: unknown keys of a section that ignores them (or keeps them
    unchecked), and the runtime's per-request values under their spec key
    when of their type (a wrong type is for the validator to name).
    """
    if not isinstance(value, dict) or getattr(section, "EXTRA", "ignore") == "forbid":
        return value
    read = {}
    for item in fields(section):
        nested = item.metadata.get("section")
        for key in (k for k in _keys(item) if k in value):
            given = value[key]
            if item.metadata.get("per_request") and key == _keys(item)[0] and (
                    isinstance(given, dict) or (given is None and item.default is None)):
                continue
            read[key] = _read(nested, given) if nested else given
    return read


def validate_netconf(stable: dict[str, Any]) -> dict[str, Any]:
    """The values the config set (per-request ones left out), or error 7 naming each bad field."""
    from pydantic import ValidationError

    from .core.decoding import config_error

    try:
        model = _model(NetConf).model_validate(stable)
    except ValidationError as err:
        raise config_error(err) from None
    return model.model_dump(exclude=set(PER_REQUEST_FIELDS), exclude_unset=True)


@functools.cache
def _model(section: type) -> type[BaseModel]:
    """The pydantic model checking `section`, built from its dataclass fields."""
    from pydantic import BeforeValidator, ConfigDict, Field, create_model
    from pydantic.functional_validators import AfterValidator

    hints = typing.get_type_hints(section)
    specs: dict[str, Any] = {}
    for item in fields(section):
        rules = dict(item.metadata)
        nested = rules.pop("section", None)
        kind: Any = _model(nested) if nested else hints[item.name]
        if nested and item.default is None:
            kind = kind | None
        checks: list[Any] = [BeforeValidator(rules.pop("before"))] if "before" in rules else []
        checks += [AfterValidator(rules.pop("after"))] if "after" in rules else []
        rules.pop("per_request", None)
        if item.default_factory is not MISSING:
            default = Field(default_factory=item.default_factory)
        elif nested and item.default not in (MISSING, None):  # a section's own defaults
            default = Field(default_factory=_model(nested))
        elif item.default is not MISSING:
            default = Field(default=item.default)
        else:
            default = Field()
        specs[item.name] = (typing.Annotated[kind, Field(**rules), *checks], default)
    config = ConfigDict(extra=getattr(section, "EXTRA", "ignore"), populate_by_name=True,
                        strict=True)
    return create_model(section.__name__, __config__=config, **specs)
