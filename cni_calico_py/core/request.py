"""One CNI invocation, read and validated from the environment and stdin."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import CNIError, Code

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# Which variables each verb cannot do without (spec, "Parameters").
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}

_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_IFNAME_MAX = 15  # IFNAMSIZ - 1, in bytes

# CNI_ARGS keys this plugin understands; others need IgnoreUnknown.
KNOWN_ARGS = frozenset(
    {
        "IgnoreUnknown",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
        "IP",
    }
)


@dataclass(frozen=True)
class Request:
    """What the runtime asked for: the verb, its environment and the raw config."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    stdin: bytes = b""
    # Where the caller's mount namespace is seen from here ("/proc/<pid>/root"),
    # when an agent serves a caller whose mounts may differ from its own; CNI_NETNS
    # is opened beneath it, while results and records keep the runtime's path.
    netns_root: str = ""

    @property
    def netns_path(self) -> str:
        """The path to open for the pod's network namespace."""
        if self.netns_root and self.netns.startswith("/"):
            return self.netns_root + self.netns
        return self.netns

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")


def _invalid_env(name: str, rule: str) -> CNIError:
    return CNIError(Code.INVALID_ENVIRONMENT, f"{name} {rule}", f"environment variable {name}")


def parse_cni_args(raw: str) -> dict[str, str]:
    """Parse CNI_ARGS (`K=V;K2=V2`) and refuse unknown keys unless told to ignore them."""
    pairs: dict[str, str] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _invalid_env("CNI_ARGS", f"has {item!r}, expected KEY=VALUE pairs separated by ';'")
        pairs[key.strip()] = value.strip()
    ignore_unknown = pairs.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in pairs if k not in KNOWN_ARGS)
    if unknown and not ignore_unknown:
        raise _invalid_env(
            "CNI_ARGS",
            f"has unknown key(s) {', '.join(unknown)}; known keys are "
            f"{', '.join(sorted(KNOWN_ARGS))}, or add IgnoreUnknown=1",
        )
    return pairs


def validate_ifname(name: str) -> None:
    """The kernel's rules for a new interface's name (dev_valid_name), in bytes."""
    if not name:
        raise _invalid_env("CNI_IFNAME", "is empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise _invalid_env("CNI_IFNAME", f"{name!r} is not valid UTF-8 text") from None
    if size > _IFNAME_MAX:
        raise _invalid_env("CNI_IFNAME", f"{name!r} is {size} bytes in UTF-8, at most {_IFNAME_MAX} "
                           "allowed")
    if name in (".", ".."):
        raise _invalid_env("CNI_IFNAME", f"{name!r} is not a valid interface name")
    if "%" in name:
        # The kernel reads "%d" as a template and picks the first free number.
        raise _invalid_env("CNI_IFNAME", f"{name!r} holds '%', which the kernel takes for a name "
                           "template")
    if any(c in name for c in "/:") or any(c.isspace() or not c.isprintable() for c in name):
        raise _invalid_env("CNI_IFNAME", f"{name!r} is not a valid interface name: no '/', ':', "
                           "spaces or control characters")


def from_environ(environ: Mapping[str, str], stdin: bytes, netns_root: str = "") -> Request:
    command = environ.get("CNI_COMMAND", "")
    if command not in VERBS:
        raise _invalid_env("CNI_COMMAND", f"is {command!r}, expected one of {', '.join(VERBS)}")
    for name in _REQUIRED_ENV[command]:
        if not environ.get(name):
            raise _invalid_env(name, f"is required for {command} and is missing or empty")
    container_id = environ.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.fullmatch(container_id):
        raise _invalid_env(
            "CNI_CONTAINERID",
            f"{container_id!r} must start with a letter or digit and hold only letters, "
            "digits, '_', '.' and '-'",
        )
    ifname = environ.get("CNI_IFNAME", "")
    if command in ("ADD", "CHECK", "DEL"):
        validate_ifname(ifname)
    args = parse_cni_args(environ.get("CNI_ARGS", "")) if command != "VERSION" else {}
    path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    return Request(
        command=command,
        container_id=container_id,
        netns=environ.get("CNI_NETNS", ""),
        ifname=ifname,
        args=args,
        path=path,
        stdin=stdin,
        netns_root=netns_root,
    )
