"""A Kubernetes control plane for tests: etcd 3.6 and kube-apiserver, made offline.

Both programs are built from the Go module proxy by scripts/go-tools.sh
(cached, so only a fresh machine pays for the build). Everything the API
server needs is made here: one RSA key signs and checks service-account
tokens, a static token file holds an admin in `system:masters`, and the API
server writes its own self-signed serving certificate into its --cert-dir.
Nothing controls it: no controller-manager, no scheduler, so a test sets a
pod's `spec.nodeName` itself and nothing garbage-collects.

    with running_control_plane(tmp_path) as cp:
        cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": "demo"}})
        subprocess.run(["kubectl", "--kubeconfig", str(cp.kubeconfig), "get", "ns"])

With `netns`, both listen on 127.0.0.1 inside that network namespace (`ip
netns exec`): only processes there reach them; `ControlPlane.request` enters
it for its own connections.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.clients.helpers import go_tool
from tests.netns import NETNS_DIR, inside, stop_process

# The history etcd keeps, as the cluster tests' etcd does.
COMPACTION = ("--auto-compaction-mode=revision", "--auto-compaction-retention=1000")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
ADMIN_USER = "admin"
ETCD_TIMEOUT = 30.0
# kube-apiserver 1.36 took a few seconds on 2 cores; a loaded machine takes longer.
APISERVER_TIMEOUT = 120.0
# The API server alone: loopback is no valid endpoint, so nothing writes the
# `kubernetes` service's endpoints, and no controller-manager makes service accounts.
_BARE_ARGS = ("--endpoint-reconciler-type=none", "--authorization-mode=RBAC",
              "--disable-admission-plugins=ServiceAccount")
# With kubelets and a controller-manager: each kubelet may touch only its own
# node's objects, as in any real cluster.
# (A node's name resolves nowhere here: the API server reaches kubelets by address.)
_CLUSTER_ARGS = ("--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                 "--kubelet-preferred-address-types=InternalIP")


@dataclass(frozen=True)
class ControlPlane:
    """A running etcd and kube-apiserver; every path lies under the control plane's directory."""

    url: str                # https://127.0.0.1:<port>, the API server
    token: str              # a bearer token of ADMIN_USER, in group system:masters
    ca_file: Path           # the API server's self-signed certificate and its CA: verifies `url`
    kubeconfig: Path        # token auth, ca_file as certificate-authority
    etcd_url: str           # http://127.0.0.1:<port>, etcd's client URL
    netns: str | None       # the network namespace both listen in; None: this one
    directory: Path         # keys, certificates, etcd's data, both logs; removed on exit
    started_in: float       # seconds from starting etcd to /readyz answering 200
    # The API server's command line and its process, for a test that takes it away for a while.
    apiserver_argv: tuple[str, ...] = ()
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    user_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def admin_token(self) -> str:
        """The admin's token (the same as `token`: the only user there is)."""
        return self.token

    @property
    def apiserver_log(self) -> Path:
        return self.directory / "kube-apiserver.log"

    @property
    def etcd_log(self) -> Path:
        return self.directory / "etcd.log"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def kubeconfig_of(self, user: str) -> Path:
        """A kubeconfig that authenticates as `user` (one of `users`)."""
        path = self.directory / f"kubeconfig-{user.replace(':', '-')}"
        _write_kubeconfig(self, path, user, self.user_tokens[user])
        return path

    def stop_apiserver(self) -> None:
        """The API server goes away; etcd and its data stay."""
        proc = self.processes.pop("kube-apiserver", None)
        if proc is not None:
            stop_process(proc)

    def start_apiserver(self) -> None:
        """The API server back, with its command line of before, once it is ready."""
        if "kube-apiserver" in self.processes:
            return
        proc = _start(self.netns, self.apiserver_log, list(self.apiserver_argv))
        self.processes["kube-apiserver"] = proc
        _wait(lambda: _ready(self.url, self.token, self.ca_file, self.netns), proc, "kube-apiserver",
              self.apiserver_log, APISERVER_TIMEOUT)

    def requests(self) -> float:
        """Requests the API server has answered so far (its apiserver_request_total)."""
        _, text = self.request("GET", "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines()
                   if line.startswith("apiserver_request_total{"))

    def writes(self) -> int:
        """Writes the API server has answered (its apiserver_request_total), Leases apart:
        renewing a node's liveness is the one write an idle node makes."""
        _, text = self.request("GET", "/metrics")
        total = 0
        for line in str(text).splitlines():
            if line.startswith("apiserver_request_total{") and 'resource="leases"' not in line and \
                    any(f'verb="{verb}"' in line for verb in ("POST", "PUT", "PATCH", "DELETE")):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 10.0) -> tuple[int, Any]:
        """One call as the admin: (HTTP status, the JSON answer, or the text when it is not JSON)."""
        return _request(self.url + path, method, body, self.token, self.ssl_context(),
                        self.netns, timeout)


@contextmanager
def running_control_plane(workdir: Path, netns: str | None = None, address: str = "127.0.0.1",
                          extra_args: Sequence[str] = (),
                          users: Sequence[tuple[str, str]] = (),
                          controllers: bool = False) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver, ready (`/readyz` 200), stopped and removed on exit, also on failure.

    `netns`: the name of a network namespace (`ip netns exec`) to run both in,
    on its loopback; None: this namespace's loopback, on free ports. `address`:
    where the API server listens instead (e.g. an underlay's gateway, for
    nodes in other namespaces). The binaries come from scripts/go-tools.sh; a
    failed build fails the test. `extra_args` go to kube-apiserver. `users`: (name,
    group) of more users, each with a token of its own (`user_tokens`) and nothing
    allowed until RBAC grants it. `controllers`: a controller-manager and kubelets
    will join (tests/k8s): pods get service-account tokens, kubelets are authorized
    as nodes, and the `kubernetes` service's endpoint is `address`.
    """
    etcd_bin, apiserver_bin = go_tool("etcd"), go_tool("kube-apiserver")
    directory = Path(tempfile.mkdtemp(prefix="control-plane-", dir=workdir))
    processes: list[subprocess.Popen[bytes]] = []
    cp: ControlPlane | None = None
    try:
        etcd_port, peer_port, apiserver_port = _free_ports(3, netns)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        url = f"https://{address}:{apiserver_port}"
        token = secrets.token_hex(16)
        started = time.monotonic()

        peer = f"http://127.0.0.1:{peer_port}"
        etcd = _start(netns, directory / "etcd.log", [
            str(etcd_bin), "--name", "control-plane", "--data-dir", str(directory / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"control-plane={peer}", *COMPACTION])
        processes.append(etcd)
        _wait(lambda: _etcd_healthy(etcd_url, netns), etcd, "etcd", directory / "etcd.log",
              ETCD_TIMEOUT)

        key = directory / "service-account.key"
        proc = subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl genrsa failed: {proc.stderr.strip()}")
        tokens = directory / "tokens.csv"
        user_tokens = {name: secrets.token_hex(16) for name, _ in users}
        tokens.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n' + "".join(
            f'{user_tokens[name]},{name},{name},"{group}"\n' for name, group in users))
        cert_dir = directory / "certs"
        apiserver_argv = [
            str(apiserver_bin),
            f"--etcd-servers={etcd_url}",
            # Without an advertise address it takes the default route's: a bare namespace has none.
            f"--bind-address={address}", f"--advertise-address={address}",
            f"--secure-port={apiserver_port}",
            f"--cert-dir={cert_dir}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
            f"--token-auth-file={tokens}",
            *(_CLUSTER_ARGS if controllers else _BARE_ARGS),
            "--enable-priority-and-fairness=false",
            "--allow-privileged=true",
            *extra_args,
        ]
        apiserver = _start(netns, directory / "kube-apiserver.log", apiserver_argv)
        processes.append(apiserver)
        # The serving certificate is written at start; its chain ends with the CA that signed it.
        ca_file = cert_dir / "apiserver.crt"
        _wait(lambda: ca_file.is_file() and _ready(url, token, ca_file, netns), apiserver,
              "kube-apiserver", directory / "kube-apiserver.log", APISERVER_TIMEOUT)

        cp = ControlPlane(url=url, token=token, ca_file=ca_file,
                          kubeconfig=directory / "kubeconfig", etcd_url=etcd_url, netns=netns,
                          directory=directory, started_in=time.monotonic() - started,
                          apiserver_argv=tuple(apiserver_argv), user_tokens=user_tokens,
                          processes={"etcd": etcd, "kube-apiserver": apiserver})
        _write_kubeconfig(cp)
        yield cp
    finally:
        # A second Ctrl-C must not cut the cleanup short: it is held until the end.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            for process in reversed(processes):
                stop_process(process)
            for process in (cp.processes.values() if cp is not None else ()):
                stop_process(process)
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _namespace(netns: str | None) -> AbstractContextManager[None]:
    return inside(f"{NETNS_DIR}/{netns}") if netns else nullcontext()


def _free_ports(count: int, netns: str | None) -> list[int]:
    """`count` distinct ports nobody listens on at 127.0.0.1 (in `netns`), chosen by the kernel."""
    with ExitStack() as stack, _namespace(netns):
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _start(netns: str | None, log_path: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    # A file, not a pipe: nobody reads the chatter while the test runs, and a full pipe blocks it.
    with open(log_path, "ab") as log:
        return subprocess.Popen([*(["ip", "netns", "exec", netns] if netns else []), *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log_path: Path,
          timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}; its log ends:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {timeout:g} s; its log ends:\n"
                               f"{_tail(log_path)}")
        time.sleep(0.2)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _request(url: str, method: str, body: Any, token: str | None, context: ssl.SSLContext | None,
             netns: str | None, timeout: float) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with _namespace(netns):  # the connection's socket is made in the namespace
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _etcd_healthy(etcd_url: str, netns: str | None) -> bool:
    try:
        status, answer = _request(f"{etcd_url}/health", "GET", None, None, None, netns, 2.0)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and isinstance(answer, dict) and answer.get("health") == "true"


def _ready(url: str, token: str, ca_file: Path, netns: str | None) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        status, _ = _request(f"{url}/readyz", "GET", None, token, context, netns, 5.0)
    except (OSError, http.client.HTTPException):  # ssl.SSLError is an OSError
        return False
    return status == 200


def _write_kubeconfig(cp: ControlPlane, path: Path | None = None, user: str = ADMIN_USER,
                      token: str | None = None) -> None:
    """A kubeconfig for kubectl and the Python clients (JSON, which YAML readers take too)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "control-plane",
                      "cluster": {"server": cp.url, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": user, "user": {"token": token or cp.token}}],
        "contexts": [{"name": "control-plane",
                      "context": {"cluster": "control-plane", "user": user}}],
        "current-context": "control-plane",
        "preferences": {},
    }
    path = path or cp.kubeconfig
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
