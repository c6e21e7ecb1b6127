"""containerd's pods as its CRI reports them, through upstream crictl (scripts/go-tools.sh)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .helpers import run


@dataclass(frozen=True)
class Sandbox:
    id: str
    pod: str  # the pod's name as kubelet gave it (static pods: <manifest name>-<node name>)
    ready: bool
    ip: str
    netns: str
    pid: int


class Crictl:
    def __init__(self, exe: Path, socket: Path) -> None:
        self.exe = exe
        self.endpoint = f"unix://{socket}"

    def __call__(self, *args: str, check: bool = True) -> str | None:
        """crictl's output, or None when it failed."""
        proc = run([str(self.exe), "--runtime-endpoint", self.endpoint,
                    "--image-endpoint", self.endpoint, "--timeout", "20s", *args],
                   check=check, timeout=60)
        return proc.stdout if proc.returncode == 0 else None

    def json(self, command: str, *args: str, check: bool = True) -> Any:
        out = self(command, "-o", "json", *args, check=check)
        return json.loads(out) if out and out.strip() else None

    def sandboxes(self) -> list[Sandbox]:
        """Every pod sandbox containerd holds, ready or not."""
        listed = self.json("pods") or {}
        found = []
        for item in listed.get("items", []):
            found.append(self.inspect(item["id"], item["metadata"]["name"]))
        return found

    def inspect(self, sandbox_id: str, pod: str) -> Sandbox:
        info = self.json("inspectp", sandbox_id, check=False) or {}
        status = info.get("status", {})
        runtime = info.get("info", {})
        netns = next((ns.get("path", "") for ns in
                      runtime.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
                      if ns.get("type") == "network"), "")
        return Sandbox(id=sandbox_id, pod=pod, ready=status.get("state") == "SANDBOX_READY",
                       ip=status.get("network", {}).get("ip", ""), netns=netns,
                       pid=int(runtime.get("pid") or 0))

    def ready(self) -> dict[str, Sandbox]:
        """The ready sandboxes with an address, by pod name."""
        return {box.pod: box for box in self.sandboxes() if box.ready and box.ip}

    def remove_all(self) -> list[str]:
        """Stop and remove every sandbox (each stop is a CNI DEL); the IDs of those there were."""
        ids = (self("pods", "-q", check=False) or "").split()
        for sandbox_id in ids:
            self("stopp", sandbox_id, check=False)
            self("rmp", "-f", sandbox_id, check=False)
        return ids
