#!/usr/bin/env python3
"""The images the upstream e2e networking specs run, built offline as docker-archive tars.

    python3 scripts/build_e2e_images.py --e2e-test E2E --agnhost AGNHOST --coredns COREDNS --out DIR

No registry is reachable from these machines, so every image the chosen specs
pull is made here, under the exact name the release's image manifest gives it
(read from `e2e.test --list-images`, so a new release cannot drift from it):

    agnhost            the release's agnhost at /agnhost (and /agnhost-2), porter's
                       TLS certificate (localhost.crt, .key) beside it, busybox's
                       applets, and the tools the specs run in it, Debian's: curl,
                       nc (OpenBSD's, as in the real image), ip, ss, dig, bash (also
                       as sh), getent; the user 1000 and group 50000 the real image defines
    glibc-dns-testing  the same without agnhost: dig and getent over glibc's resolver
    busybox            busybox alone, running `sh`
    pause              busybox's sh, sleeping until it is stopped
    coredns            CoreDNS at /coredns, tagged with its own version

Each tar is what `ctr images import` reads. One line per image goes to stdout:
its name and its tar. The programs' shared libraries come from the host, as
scripts/build_image.py takes them for the node image.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The sibling script, found through the line above.
from build_image import (
    BuildError,
    _mkdirs,
    copy_host_path,
    docker_archive,
    install_busybox,
    needed_libraries,
    static_busybox,
)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where agnhost's image has each tool, and the Debian package that gives it.
AGNHOST_TOOLS = {
    "/usr/bin/curl": ("/usr/bin/curl", "curl"),
    "/usr/bin/nc": ("/usr/bin/nc.openbsd", "netcat-openbsd"),
    "/usr/sbin/ip": ("/usr/sbin/ip", "iproute2"),
    "/usr/sbin/ss": ("/usr/bin/ss", "iproute2"),
    "/usr/bin/dig": ("/usr/bin/dig", "bind9-dnsutils"),
    "/bin/bash": ("/usr/bin/bash", "bash"),
    "/usr/bin/getent": ("/usr/bin/getent", "libc-bin"),
}
ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\n"
              "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\nuser-defined-in-image:x:1000:\n"
             "group-defined-in-image:x:50000:user-defined-in-image\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "resolv.conf": "",
}
SLEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]


def listed_images(e2e_test: Path) -> dict[str, str]:
    """The release's images by short name (agnhost, pause, ...): `e2e.test --list-images`."""
    proc = subprocess.run([str(e2e_test), "--list-images"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    if proc.returncode != 0:
        raise BuildError(f"{e2e_test} --list-images exited {proc.returncode}: {proc.stderr[-500:]}")
    images: dict[str, str] = {}
    for image in proc.stdout.split():
        name = image.rsplit("/", 1)[-1].split(":", 1)[0]
        # agnhost is listed twice (this release's and the previous one): keep the newest.
        if name not in images or _version(image) > _version(images[name]):
            images[name] = image
    return images


def _version(image: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", image.rsplit(":", 1)[-1]))


def base_rootfs(rootfs: Path) -> None:
    """busybox, the usual directories and /etc."""
    for sub, mode in {"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "tmp": 0o1777,
                      "root": 0o700, "etc": 0o755, "var": 0o755}.items():
        _mkdirs(rootfs / sub)
        (rootfs / sub).chmod(mode)
    install_busybox(rootfs, static_busybox())
    for name, text in ETC_FILES.items():
        (rootfs / "etc" / name).write_text(text)
        (rootfs / "etc" / name).chmod(0o644)


def add_program(rootfs: Path, image_path: str, host_path: str, package: str) -> None:
    """The host's program at `image_path` in the image, with every library it needs."""
    host = Path(host_path)
    if not host.is_file():
        raise BuildError(f"{host_path} is missing: apt-get install {package}")
    for library in needed_libraries(host):
        copy_host_path(rootfs, library)
    dest = rootfs / image_path.lstrip("/")
    _mkdirs(dest.parent)
    dest.write_bytes(host.read_bytes())
    dest.chmod(0o755)


def tools_rootfs(rootfs: Path) -> None:
    """busybox and the tools of agnhost's image: glibc-dns-testing's root filesystem."""
    base_rootfs(rootfs)
    for image_path, (host_path, package) in AGNHOST_TOOLS.items():
        add_program(rootfs, image_path, host_path, package)
    # Debian's busybox shell runs its own applets before anything on PATH, so `sh -c "nc ..."`
    # would get busybox's nc, not the image's: sh is bash here, which looks on PATH.
    (rootfs / "bin" / "sh").unlink()
    (rootfs / "bin" / "sh").symlink_to("bash")


def agnhost_rootfs(rootfs: Path, agnhost: Path) -> None:
    tools_rootfs(rootfs)
    (rootfs / "agnhost").write_bytes(agnhost.read_bytes())
    (rootfs / "agnhost").chmod(0o755)
    (rootfs / "agnhost-2").symlink_to("agnhost")
    # porter's TLS certificate and key, at / as in the real image.
    for name in ("localhost.crt", "localhost.key"):
        source = agnhost.parent / name
        if not source.is_file():
            raise BuildError(f"{source} is missing: scripts/go-tools.sh agnhost puts it there")
        (rootfs / name).write_bytes(source.read_bytes())
        (rootfs / name).chmod(0o644)
    for sub in ("uploads", "home/user-defined-in-image"):
        _mkdirs(rootfs / sub)


def coredns_version(coredns: Path) -> str:
    proc = subprocess.run([str(coredns), "-version"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    found = re.search(r"CoreDNS-(\S+)", proc.stdout)
    if found is None:
        raise BuildError(f"{coredns} -version said no version: {proc.stdout[-300:]}")
    return f"v{found.group(1)}"


def build(e2e_test: Path, agnhost: Path, coredns: Path, out: Path) -> list[tuple[str, Path]]:
    images = listed_images(e2e_test)
    missing = [name for name in ("agnhost", "busybox", "pause", "glibc-dns-testing")
               if name not in images]
    if missing:
        raise BuildError(f"{e2e_test} --list-images names no {', '.join(missing)} image")
    out.mkdir(parents=True, exist_ok=True)
    env = [f"PATH={PATH}"]
    made: list[tuple[str, Path]] = []

    def image(name: str, tag: str, fill: Callable[[Path], None], **config: object) -> None:
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}.rootfs.") as scratch:
            rootfs = Path(scratch)
            rootfs.chmod(0o755)
            fill(rootfs)
            made.append((tag, docker_archive(rootfs, out / f"{name}.tar", tag, env=env,
                                             **config)))  # type: ignore[arg-type]

    image("agnhost", images["agnhost"], lambda r: agnhost_rootfs(r, agnhost),
          entrypoint=["/agnhost"], cmd=["pause"],
          exposed_ports=["80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"])
    image("glibc-dns-testing", images["glibc-dns-testing"], tools_rootfs,
          entrypoint=None, cmd=["/bin/sh"])
    image("busybox", images["busybox"], base_rootfs, entrypoint=None, cmd=["sh"])
    image("pause", images["pause"], base_rootfs, entrypoint=SLEEPER)

    def coredns_rootfs(rootfs: Path) -> None:
        base_rootfs(rootfs)
        (rootfs / "coredns").write_bytes(coredns.read_bytes())
        (rootfs / "coredns").chmod(0o755)

    image("coredns", f"registry.k8s.io/coredns/coredns:{coredns_version(coredns)}", coredns_rootfs,
          entrypoint=["/coredns"], exposed_ports=["53/tcp", "53/udp"])
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the images the upstream e2e networking specs run (agnhost, "
                    "glibc-dns-testing, busybox, pause) and CoreDNS's, offline, as "
                    "docker-archive tars for `ctr images import`.")
    parser.add_argument("--e2e-test", type=Path, required=True,
                        help="the release's e2e.test (scripts/go-tools.sh e2e.test): it names the images")
    parser.add_argument("--agnhost", type=Path, required=True,
                        help="the release's agnhost (scripts/go-tools.sh agnhost)")
    parser.add_argument("--coredns", type=Path, required=True,
                        help="CoreDNS (scripts/go-tools.sh coredns)")
    parser.add_argument("--out", type=Path, required=True, help="the directory for the tars")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        made = build(args.e2e_test, args.agnhost, args.coredns, args.out)
    except (BuildError, OSError, subprocess.SubprocessError) as err:
        print(f"build_e2e_images.py: {err}", file=sys.stderr)
        return 1
    for tag, path in made:
        print(f"{tag} {path}")
    print(f"{len(made)} images in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
