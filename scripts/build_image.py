#!/usr/bin/env python3
"""The node image: the frozen build, BIRD and busybox in a docker-archive tar, made offline.

    python3 scripts/build_image.py --dist dist --out dist/calico-py-image.tar

(`make image` builds first, then runs this.) The tar is what `docker save`
writes and `ctr images import` reads: one layer, a config and manifest.json,
tagged calico-py:<version>. Inside:

    /opt/calico-py/calico-py.d/             the frozen build (`make build`), launcher included
    /opt/calico-py/calico-py{,-ipam}        -> calico-py.d/launcher, as `make install` links them
    /usr/local/bin/calico-py{,-ipam}        -> the same launcher (the entrypoint)
    /usr/sbin/bird, /usr/sbin/birdc         Debian's bird2, for the node daemon's BGP mode
    /bin/busybox and a link per applet      Debian's busybox-static: sh, ls, cat, ...
    the shared libraries all of these need, at the host's paths, and the dynamic loader

so the image needs nothing from the node's filesystem. Everything is owned by
root with mtime 0 and written in sorted order: the same inputs give the same
bytes. Only the standard library is used, so any python3 runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "calico-py"
# What `make install` links to the launcher: one program, acting by the name it runs under.
PROGRAMS = ("calico-py", "calico-py-ipam")
LAUNCHER = "launcher"
APP_DIR = f"/opt/{NAME}"
BIN_DIR = "/usr/local/bin"
# The only programs the code runs (cluster/bird.py); a foreign IPAM plugin
# that the CNI side may run is the node's, in its CNI bin dir, not the image's.
BIRD = ("/usr/sbin/bird", "/usr/sbin/birdc")
PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# PyInstaller's bootloader puts this directory of the build first on the
# search path of everything it loads; the executables beside it start without.
BUNDLED_LIBS = "_internal"
ELF_MAGIC = b"\x7fELF"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
                 "s390x": "s390x", "riscv64": "riscv64"}

ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    # The runtime mounts its own over this one.
    "resolv.conf": "",
}
DIRECTORIES = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "tmp": 0o1777,
               "root": 0o700, "var/lib": 0o755, "var/log": 0o755, "usr/local/bin": 0o755,
               "bin": 0o755, "etc": 0o755}


class BuildError(Exception):
    """Something the image needs is missing; the message says what to install or run."""


def read_version(init: Path = REPO / "cni_calico_py" / "__init__.py") -> str:
    """`__version__` as written in the package, which is not imported (it pulls in pydantic)."""
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init.read_text(), re.MULTILINE)
    if found is None:
        raise BuildError(f"no __version__ in {init}")
    return found.group(1)


# --- the docker-archive writer (the tests' sandbox images use it too) ---

def _walk(rootfs: Path) -> Iterator[Path]:
    """Everything under `rootfs`, parents first, without following symlinked directories."""
    found = []
    for top, dirs, files in os.walk(rootfs):
        found += [Path(top, name) for name in dirs + files]
    yield from sorted(found, key=lambda path: path.relative_to(rootfs).parts)


def _write_layer(rootfs: Path, layer_path: Path) -> str:
    """`rootfs` as an uncompressed layer tar; its sha256, which is also its diff ID."""
    with tarfile.open(layer_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(rootfs):
            # A second name of a file already written becomes a hard link here.
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as src:
                    tar.addfile(info, src)
            else:
                tar.addfile(info)
    digest = hashlib.sha256()
    with layer_path.open("rb") as layer:
        while chunk := layer.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def docker_archive(rootfs: Path, tar_path: Path, tag: str,
                   entrypoint: Sequence[str] | None = None, cmd: Sequence[str] | None = None,
                   exposed_ports: Sequence[str] = (), env: Sequence[str] = ("PATH=/bin",),
                   labels: Mapping[str, str] | None = None) -> Path:
    """Write `rootfs` as a one-layer docker-archive image tagged `tag`.

    `entrypoint` and `cmd` None leave them out of the config, `exposed_ports`
    ("80/tcp") are listed as the image's own. The tar appears whole or not at all.
    """
    image_config: dict[str, Any] = {"Env": list(env), "WorkingDir": "/"}
    if entrypoint is not None:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        image_config["Cmd"] = list(cmd)
    if exposed_ports:
        image_config["ExposedPorts"] = {port: {} for port in exposed_ports}
    if labels:
        image_config["Labels"] = dict(labels)
    # The layer is written to disk, not memory: the node image's is well over 100 MB.
    with tempfile.TemporaryDirectory(dir=tar_path.parent, prefix=f".{tar_path.name}.") as scratch:
        layer_path = Path(scratch) / "layer.tar"
        layer_digest = _write_layer(rootfs, layer_path)
        config = json.dumps({
            "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/build_image.py"}],
        }, sort_keys=True).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        layer_name = f"{layer_digest}/layer.tar"
        manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
        partial = Path(scratch) / "image.tar"
        with tarfile.open(partial, "w") as tar:
            info = tarfile.TarInfo(layer_name)
            info.size = layer_path.stat().st_size
            info.mode = 0o644
            with layer_path.open("rb") as layer:
                tar.addfile(info, layer)
            for name, data in ((config_name, config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        os.replace(partial, tar_path)
    return tar_path


# --- what the programs need from the host ---

def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == ELF_MAGIC


def needed_libraries(elf: Path, library_path: str | None = None) -> list[str]:
    """The host paths `ldd` resolves for `elf` (the loader included); [] if static."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if library_path is None:
        env.pop("LD_LIBRARY_PATH", None)
    else:
        env["LD_LIBRARY_PATH"] = library_path
    proc = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return []
        raise BuildError(f"ldd {elf} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    paths, missing = [], []
    for line in proc.stdout.splitlines():
        name, arrow, rest = line.strip().partition(" => ")
        if arrow:
            target = rest.split(" (")[0].strip()
            if target == "not found":
                missing.append(name)
            elif target.startswith("/"):
                paths.append(target)
        elif name.startswith("/"):
            # The program's interpreter, the dynamic loader.
            paths.append(name.split(" (")[0])
    if missing:
        raise BuildError(f"{elf} needs {', '.join(missing)}, which the host does not have")
    return paths


def _mkdirs(path: Path) -> None:
    """`path` and its missing parents, mode 0755 whatever the umask: the layer records modes."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        directory.chmod(0o755)


def copy_host_path(rootfs: Path, path: str, _depth: int = 0) -> None:
    """Copy the host's `path` to the same path under `rootfs`, with each symlink on the way.

    The symlinks go in as they are, so a merged /usr's /lib -> usr/lib and a
    library's soname link both exist in the image as the loader expects them.
    """
    if _depth > 40:
        raise BuildError(f"too many levels of symbolic links resolving {path}")
    parts = Path(posixpath.normpath(path)).parts[1:]
    for i in range(len(parts)):
        host = Path("/", *parts[:i + 1])
        dest = rootfs.joinpath(*parts[:i + 1])
        last = i == len(parts) - 1
        if host.is_symlink():
            if dest.is_dir() and not dest.is_symlink():
                # The image has a real directory here (/bin is busybox's):
                # put the rest in it, where the path names it.
                continue
            target = os.readlink(host)
            if not dest.is_symlink():
                dest.symlink_to(target)
            resolved = posixpath.normpath(posixpath.join(str(host.parent), target, *parts[i + 1:]))
            copy_host_path(rootfs, resolved, _depth + 1)
            return
        if last:
            if not dest.exists():
                shutil.copy2(host, dest)
        elif not dest.exists():
            _mkdirs(dest)


def host_libraries(app: Path, extra: Sequence[Path]) -> list[str]:
    """Every host library (and the loader) the build's ELF files and `extra` need.

    Libraries the build carries itself are left out: the ones in its
    _internal/ are found there, as the bootloader arranges at run time.
    """
    bundled = app / BUNDLED_LIBS
    jobs: list[tuple[Path, str | None]] = [(path, None) for path in extra]
    for path in _walk(app):
        if path.is_file() and not path.is_symlink() and is_elf(path):
            inside = path.parent != app and bundled.is_dir()
            jobs.append((path, str(bundled) if inside else None))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda job: needed_libraries(*job), jobs))
    real_app = app.resolve()
    return sorted({lib for libs in results for lib in libs
                   if not Path(lib).resolve().is_relative_to(real_app)})


def static_busybox() -> Path:
    found = shutil.which("busybox", path=PATH)
    if found is None:
        raise BuildError("busybox is not installed: apt-get install busybox-static")
    if needed_libraries(Path(found)):
        raise BuildError(f"{found} is dynamically linked: apt-get install busybox-static")
    return Path(found)


def bird_programs() -> list[Path]:
    missing = [path for path in BIRD if not Path(path).is_file()]
    if missing:
        raise BuildError(f"{', '.join(missing)} missing: apt-get install bird2")
    return [Path(path) for path in BIRD]


# --- the root filesystem ---

def install_busybox(rootfs: Path, busybox: Path) -> None:
    """/bin/busybox and a link to it for each applet that /bin does not have already."""
    _mkdirs(rootfs / "bin")
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")


def _relative_link(link: Path, rootfs: Path, target: str) -> None:
    """`link` -> `target` (an absolute path in the image), as a relative link.

    Relative, so the links also resolve in the unpacked layer seen from the host.
    """
    _mkdirs(link.parent)
    link.symlink_to(posixpath.relpath(target, "/" + str(link.parent.relative_to(rootfs))))


def make_rootfs(rootfs: Path, app: Path) -> int:
    """Lay the image out in `rootfs`; the number of host libraries copied in."""
    for name in (NAME, LAUNCHER):
        if not (app / name).is_file():
            raise BuildError(f"{app / name} is missing: run `make build` first")
    busybox = static_busybox()
    birds = bird_programs()
    for sub, mode in DIRECTORIES.items():
        _mkdirs(rootfs / sub)
        (rootfs / sub).chmod(mode)
    (rootfs / "var" / "run").symlink_to("/run")
    for name, text in ETC_FILES.items():
        (rootfs / "etc" / name).write_text(text)
        (rootfs / "etc" / name).chmod(0o644)

    app_dir = rootfs / APP_DIR.lstrip("/")
    _mkdirs(app_dir)
    shutil.copytree(app, app_dir / f"{NAME}.d", symlinks=True)
    for program in PROGRAMS:
        (app_dir / program).symlink_to(f"{NAME}.d/{LAUNCHER}")
        _relative_link(rootfs / BIN_DIR.lstrip("/") / program, rootfs,
                       f"{APP_DIR}/{NAME}.d/{LAUNCHER}")

    install_busybox(rootfs, busybox)

    for bird in birds:
        copy_host_path(rootfs, str(bird))
    libraries = host_libraries(app, birds)
    for library in libraries:
        copy_host_path(rootfs, library)
    return len(libraries)


def build(dist: Path, out: Path, tag: str | None = None) -> tuple[str, int]:
    """Write the image of `dist`'s build to `out`; its tag and how many host libraries it holds."""
    version = read_version()
    tag = tag or f"{NAME}:{version}"
    app = dist / f"{NAME}.d"
    if not app.is_dir():
        raise BuildError(f"{app} is missing: run `make build` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.rootfs.") as scratch:
        rootfs = Path(scratch) / "rootfs"
        rootfs.mkdir()
        rootfs.chmod(0o755)
        count = make_rootfs(rootfs, app)
        docker_archive(
            rootfs, out, tag,
            entrypoint=[f"{BIN_DIR}/{NAME}"], cmd=["--help"], env=[f"PATH={PATH}"],
            labels={"org.opencontainers.image.title": NAME,
                    "org.opencontainers.image.version": version},
        )
    return tag, count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the calico-py node image (docker-archive tar, for `ctr images import`) "
                    "from the frozen build, Debian's bird2 and busybox-static.")
    parser.add_argument("--dist", type=Path, default=REPO / "dist",
                        help=f"where `make build` put {NAME}.d/ (default: %(default)s)")
    parser.add_argument("--out", type=Path,
                        help=f"the tar to write (default: <dist>/{NAME}-image.tar)")
    parser.add_argument("--tag", help=f"the image's tag (default: {NAME}:<package version>)")
    args = parser.parse_args(argv)
    out: Path = args.out or args.dist / f"{NAME}-image.tar"
    started = time.monotonic()
    try:
        tag, count = build(args.dist, out, args.tag)
    except (BuildError, OSError, subprocess.CalledProcessError) as err:
        print(f"build_image.py: {err}", file=sys.stderr)
        return 1
    size = out.stat().st_size / 1e6
    print(f"{tag} {out}")
    print(f"{size:.1f} MB, {count} shared libraries from the host, "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
