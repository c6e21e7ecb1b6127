"""`calico-py install-cni`: the node's CNI directories filled from the image, in order.

Everything that can be wrong with the inputs (the network config, the
service account, the build) is found before the node is touched. Then the
build goes in, then the kubeconfig, and the conflist last: the runtime
reports the node Ready once a conflist appears, and the plugin it names must
be there by then.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TextIO

from .. import __version__
from ..core.files import TEMP_PREFIX
from ..core.files import replace as replace_file
from ..datastore.kubeconfig import SERVICE_ACCOUNT
from ..datastore.settings import ETCD, KUBERNETES
from . import build, kubeconfig, network
from .errors import InstallError

DEFAULT_BIN_DIR = "/host/opt/cni/bin"
DEFAULT_CONF_DIR = "/host/etc/cni/net.d"
# The conf dir as the node sees it: the kubeconfig's path in the conflist is the node's.
DEFAULT_HOST_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CONF_NAME = "10-calico-py.conflist"
# Environment variables, named as Calico's install-cni names them where it has one.
BIN_DIR_ENV = "CNI_BIN_DIR"
CONF_DIR_ENV = "CNI_CONF_DIR"
HOST_CONF_DIR_ENV = "CNI_NET_DIR"
CONF_NAME_ENV = "CNI_CONF_NAME"
NETWORK_CONFIG_ENV = "CNI_NETWORK_CONFIG"
NETWORK_CONFIG_FILE_ENV = "CNI_NETWORK_CONFIG_FILE"
DATASTORE_ENV = "DATASTORE_TYPE"
# The manifest's node.yaml says kubernetes; DATASTORE_TYPE switches both.
DEFAULT_DATASTORE = KUBERNETES


@dataclass(frozen=True)
class Options:
    """What the command line gave; None: the environment's value, else the default."""

    source: str | None = None
    bin_dir: str | None = None
    conf_dir: str | None = None
    host_conf_dir: str | None = None
    conf_name: str | None = None
    service_account: str | None = None


@dataclass(frozen=True)
class _Plan:
    source: str
    bin_dir: str
    conf_dir: str
    conflist_path: str
    conflist: str
    kubeconfig_path: str
    kubeconfig: str | None
    api_server: str | None
    datastore: str


def run(options: Options, environ: Mapping[str, str], log: TextIO) -> int:
    def say(message: str) -> None:
        log.write(f"calico-py install-cni: {message}\n")
        log.flush()

    try:
        plan = _plan(options, environ)
        _carry_out(plan, say)
    except (InstallError, OSError) as err:
        say(f"error: {err}")
        return 1
    return 0


def _plan(options: Options, environ: Mapping[str, str]) -> _Plan:
    """Every input read and checked; nothing on the node changed yet."""
    bin_dir = options.bin_dir or environ.get(BIN_DIR_ENV) or DEFAULT_BIN_DIR
    conf_dir = options.conf_dir or environ.get(CONF_DIR_ENV) or DEFAULT_CONF_DIR
    host_conf_dir = options.host_conf_dir or environ.get(HOST_CONF_DIR_ENV) or DEFAULT_HOST_CONF_DIR
    conf_name = options.conf_name or environ.get(CONF_NAME_ENV) or DEFAULT_CONF_NAME
    if "/" in conf_name or not conf_name.endswith(".conflist"):
        raise InstallError(f"the conflist's name {conf_name!r} must be a file name ending in "
                           ".conflist (runtimes load it as a plugin chain by that suffix)")
    datastore = environ.get(DATASTORE_ENV) or DEFAULT_DATASTORE
    if datastore not in (ETCD, KUBERNETES):
        raise InstallError(f"{DATASTORE_ENV}={datastore!r}: use {ETCD} or {KUBERNETES}")
    kubeconfig_host_path = os.path.join(host_conf_dir, kubeconfig.FILENAME)
    text, where = _network_config(environ)
    conflist = network.render(text, kubeconfig_host_path, where)
    kube = api_server = None
    if datastore == KUBERNETES:
        kube = kubeconfig.render(options.service_account or SERVICE_ACCOUNT, environ)
        api_server = kubeconfig.server(environ)
    source = options.source or build.frozen_build()
    if source is None:
        raise InstallError("this calico-py is not a frozen build, so there is none to copy: pass "
                           "--source the directory `make build` makes (dist/calico-py.d)")
    build.check_source(source)
    _check_directory(bin_dir, "CNI bin dir", "--bin-dir", "/opt/cni/bin")
    _check_directory(conf_dir, "CNI conf dir", "--conf-dir", "/etc/cni/net.d")
    return _Plan(source, bin_dir, conf_dir, os.path.join(conf_dir, conf_name), conflist,
                 os.path.join(conf_dir, kubeconfig.FILENAME), kube, api_server, datastore)


def _network_config(environ: Mapping[str, str]) -> tuple[str, str]:
    """The conflist's text and where it came from, for messages."""
    text = environ.get(NETWORK_CONFIG_ENV)
    if text:
        return text, NETWORK_CONFIG_ENV
    path = environ.get(NETWORK_CONFIG_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                return file.read(), path
        except (OSError, UnicodeDecodeError) as err:
            raise InstallError(f"cannot read {NETWORK_CONFIG_FILE_ENV}={path}: {err}") from None
    raise InstallError(f"no network config: set {NETWORK_CONFIG_ENV} to the conflist's JSON "
                       f"(the manifest takes it from the calico-py-config ConfigMap's "
                       f"cni_network_config) or {NETWORK_CONFIG_FILE_ENV} to a file holding it")


def _check_directory(path: str, what: str, option: str, node_path: str) -> None:
    if not os.path.isdir(path):
        raise InstallError(f"the {what} {path} is not a directory: mount the node's {node_path} "
                           f"there (a hostPath volume) or pass {option}")
    if not os.access(path, os.W_OK):
        raise InstallError(f"the {what} {path} is not writable (a read-only mount?): calico-py "
                           "installs into it")


def _carry_out(plan: _Plan, say: Callable[[str], None]) -> None:
    with _locked(plan.bin_dir):
        try:
            installed = build.install(plan.source, plan.bin_dir)
        except OSError as err:
            raise InstallError(f"cannot install the build into {plan.bin_dir}: {err}") from None
        say(f"installed calico-py {__version__} from {plan.source} as {installed.path}"
            + (", replacing the build there" if installed.replaced else ""))
        if installed.gap:
            say("this system cannot exchange two directories in one rename: the old build was "
                "moved aside first, and a runtime calling the plugin just then was told to retry")
        say(f"linked {', '.join(build.PROGRAMS)} in {plan.bin_dir} to "
            f"{build.BUILD}/{build.LAUNCHER}")
        _remove_temporaries(plan.conf_dir, (plan.kubeconfig_path, plan.conflist_path))
        if plan.kubeconfig is None:
            say(f"{DATASTORE_ENV}={plan.datastore}: no kubeconfig written (the node reaches "
                "etcd itself)")
        else:
            _write(plan.kubeconfig_path, plan.kubeconfig, 0o600)
            say(f"wrote {plan.kubeconfig_path} (mode 0600): the pod's service account, for "
                f"{plan.api_server}")
        # Last: once a conflist is there, the runtime reports the node Ready.
        _write(plan.conflist_path, plan.conflist, 0o644)
        say(f"wrote {plan.conflist_path}: plugins {', '.join(network.plugin_types(plan.conflist))}")


def _write(path: str, content: str, mode: int) -> None:
    try:
        replace_file(path, content, mode=mode)
    except OSError as err:
        raise InstallError(f"cannot write {path}: {err.strerror}") from None


def _remove_temporaries(directory: str, targets: tuple[str, ...]) -> None:
    """What a killed run left of its replacements (one may hold a token)."""
    prefixes = tuple(f"{TEMP_PREFIX}{os.path.basename(target)}-" for target in targets)
    for name in os.listdir(directory):
        if name.startswith(prefixes):
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


@contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One installer at a time per node: each removes what the other would be making."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
