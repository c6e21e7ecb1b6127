"""BGP mode: one BIRD 2 per node announces the node's blocks and installs the peers' ones.

BIRD learns the `blackhole <block> proto 98` routes the IPAM installs and
announces exactly those to every other node (full iBGP mesh); what it learns
over BGP it writes to the kernel as `<block> via <peer> dev <uplink> proto bird`.
Nothing has to be reconfigured when a block is claimed or released: adding or
removing the blackhole route is enough. This module runs BIRD; bird_config.py
writes its config.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path

from ..core import files
from .bird_config import peer_address
from .repair import RouteShape

START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
# What `birdc configure` prints when the new config was taken, now or once a
# previous reconfiguration has finished.
RECONFIGURED = ("Reconfigured", "Reconfiguration in progress", "Reconfiguration already in progress")
# The config's only kernel protocol, named by BIRD's template (`kernel%d`).
KERNEL_PROTOCOL = "kernel1"
ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit")


class BirdError(Exception):
    """BIRD rejected a config, did not start, or did not take a new config."""


def _is_bird(pid: int) -> bool:
    """The pid is a live BIRD; a zombie counts as gone, since init may reap it late."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return comm == "bird" and bool(fields) and fields[0] not in ("Z", "X")


def _run(*args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise BirdError(f"{args[0]} is not installed (Debian: apt-get install bird2)") from err
    except subprocess.TimeoutExpired as err:
        raise BirdError(f"{' '.join(args)} did not finish within {timeout:g} s") from err


class Bird:
    """The BIRD of the current network namespace, with its files in one directory."""

    def __init__(self, directory: str) -> None:
        # BIRD re-reads the config by the path it was started with, from its own cwd.
        self.directory = os.path.abspath(directory)
        self.conf_path = os.path.join(self.directory, "bird.conf")
        self.socket_path = os.path.join(self.directory, "bird.ctl")
        self.pid_path = os.path.join(self.directory, "bird.pid")
        self.log_path = os.path.join(self.directory, "bird.log")
        # When this object last started BIRD (monotonic), which then fills the kernel in a moment.
        self.started_at: float | None = None

    def apply(self, text: str) -> str:
        """Make BIRD run `text`: "started", "reconfigured" or "unchanged"."""
        os.makedirs(self.directory, exist_ok=True)
        try:
            previous: str | None = Path(self.conf_path).read_text()
        except FileNotFoundError:
            previous = None
        changed = previous != text
        if changed:
            self._install(text)
        if not self.running():
            self._start()
            return "started"
        if not changed:
            return "unchanged"
        try:
            self._configure()
        except BirdError:
            # Put back what BIRD still runs, so the next apply sees a change and retries.
            if previous is None:
                os.unlink(self.conf_path)
            else:
                self._write(previous)
            raise
        return "reconfigured"

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and _is_bird(pid)

    def stop(self) -> None:
        pid = self._pid()
        if pid is None or not _is_bird(pid):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while _is_bird(pid):
            if time.monotonic() > deadline:
                raise BirdError(f"BIRD (pid {pid}) did not stop within {STOP_TIMEOUT:g} s")
            time.sleep(0.05)

    def peer_states(self) -> dict[str, str]:
        """Peer IP -> BGP state ("Established", "Active", ...), or BIRD's up/start/down."""
        if not self.running():
            return {}
        proc = _run("birdc", "-s", self.socket_path, "show", "protocols")
        if proc.returncode != 0:
            return {}
        states = {}
        for line in proc.stdout.splitlines():
            # Name, Proto, Table, State, Since, Info (which may be several words).
            fields = line.split(None, 5)
            address = peer_address(fields[0]) if len(fields) >= 4 else None
            if address is None:
                continue
            info = fields[5].split() if len(fields) > 5 else []
            states[address] = info[0] if info else fields[3]
        return states

    def exported(self) -> dict[IPv4Network, RouteShape] | None:
        """What BIRD writes to the kernel (its kernel protocol's exports); None: no answer."""
        proc = _run("birdc", "-s", self.socket_path, "show", "route", "export", KERNEL_PROTOCOL)
        return parse_exports(proc.stdout) if proc.returncode == 0 else None

    def rewrite_kernel(self) -> None:
        """Make BIRD write its routes to the kernel again: what is there already is left as it is
        (the kernel takes an identical replace as no change), what is missing or wrong is put right."""
        proc = _run("birdc", "-s", self.socket_path, "reload", "out", KERNEL_PROTOCOL)
        if proc.returncode != 0 or "reloading" not in proc.stdout:
            raise BirdError(f"BIRD did not re-export its kernel routes: "
                            f"{(proc.stdout + proc.stderr).strip()}")

    # -- helpers
    def _pid(self) -> int | None:
        try:
            return int(Path(self.pid_path).read_text().strip())
        except (OSError, ValueError):
            return None

    def _write(self, text: str) -> None:
        """Atomically, so a BIRD (re)reading the file never sees half of it."""
        files.replace(self.conf_path, text)

    def _install(self, text: str) -> None:
        """Write `text` only if BIRD parses it: a running BIRD keeps its config otherwise."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".bird.conf.check.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            self._validate(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._write(text)

    def _validate(self, path: str) -> None:
        proc = _run("bird", "-p", "-c", path)
        if proc.returncode != 0:
            raise BirdError(f"BIRD rejected the config: {(proc.stderr or proc.stdout).strip()}")

    def _answers(self) -> bool:
        return _run("birdc", "-s", self.socket_path, "show", "status", timeout=2).returncode == 0

    def _start(self) -> None:
        self._validate(self.conf_path)
        # A pid file left behind: the BIRD before was killed (its DaemonSet pod
        # replaced), not stopped, and the routes it wrote are still in the kernel.
        # Recovery (-R) keeps them until the peers have sent everything again,
        # as they keep this node's routes meanwhile (`graceful restart` in the config).
        recovery = ["-R"] if self._pid() is not None else []
        # BIRD daemonizes (and closes our pipes) itself, so it outlives the node
        # daemon: restarting the daemon must not withdraw this node's routes.
        proc = _run("bird", "-c", self.conf_path, "-s", self.socket_path, "-P", self.pid_path,
                    *recovery)
        self.started_at = time.monotonic()
        if proc.returncode != 0:
            raise BirdError(f"BIRD did not start: {(proc.stderr or proc.stdout).strip()}")
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.running() and self._answers()):
            if time.monotonic() > deadline:
                raise BirdError(f"BIRD did not answer on {self.socket_path} within {START_TIMEOUT:g} s "
                                f"(see {self.log_path})")
            time.sleep(0.05)

    def _configure(self) -> None:
        proc = _run("birdc", "-s", self.socket_path, "configure")
        lines = [line.strip() for line in proc.stdout.splitlines()]
        if proc.returncode != 0 or not any(line.startswith(RECONFIGURED) for line in lines):
            detail = "; ".join(line for line in lines if line and "ready." not in line)
            raise BirdError(f"BIRD did not take the new config: {detail or proc.stderr.strip()}")


def parse_exports(text: str) -> dict[IPv4Network, RouteShape]:
    """`show route export`: a line per network (type first), its next hops on the lines below;
    a further route of the same network (an indented type) is not what was exported."""
    shapes: dict[IPv4Network, RouteShape] = {}
    current: IPv4Network | None = None
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if not line[0].isspace():
            try:
                current = IPv4Network(fields[0])
            except ValueError:
                current = None
                continue
            kind = fields[1] if len(fields) > 1 and fields[1] in ROUTE_TYPES else "unicast"
            shapes[current] = RouteShape(kind)
        elif fields[0] in ROUTE_TYPES:
            current = None
        elif current is not None and fields[0] == "via" and len(fields) > 1:
            shape = shapes[current]
            shapes[current] = RouteShape(shape.type, tuple(sorted({*shape.gateways, fields[1]})))
    return shapes
