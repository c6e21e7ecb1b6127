"""Offline stand-ins for the images critest 1.37.0 uses, under the names it asks for.

critest pulls an image only when the runtime does not already have it, and
no registry is reachable here, so every image the focused specs use is built
from Debian's busybox-static and imported under exactly the name critest
looks up (cri-tools pkg/framework/util.go, pkg/validate/consts.go,
consts_linux.go, multi_container_linux.go). The sandbox (pause) image is the
runtime's own `sandbox_image`: critest never names one.

The web servers are busybox's httpd answering 200 on "/" where the real image
listens. Their PID 1 is a shell that keeps the real image's program name in
its command line ("nginx: master process", "httpd-foreground"), which specs
that read PID 1's command line look for. As in the real busybox image, the
applets are hard links to one binary.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..helpers import require, run
from ..images import docker_archive

# cri-tools framework.DefaultLinuxContainerImage.
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
# cri-tools validate.webServerLinuxImage: Networking port mapping and portforward specs.
NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
# cri-tools validate.httpdImage: "Multiple Containers ... should support network".
HTTPD = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
# cri-tools validate.hostNetWebServerImage (GOARCH amd64, no tag: latest): portforward in host network.
HOSTNET_NGINX = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"
# cri-tools validate.webServerHostNetContainerPort.
HOSTNET_NGINX_PORT = 12003

WEB_ROOT = "/www"
INDEX_HTML = "<html><body>calico-py e2e web server</body></html>\n"


def _web_server(port: int, program: str) -> list[str]:
    """PID 1 of a web server image: a shell named `program` running busybox httpd on `port`.

    The shell stays PID 1 (so its command line carries `program`) and exits
    on TERM; httpd goes with it when the container's PID namespace ends.
    """
    script = (f"echo {program.split(':')[0]} listening on {port}; "
              f"trap 'exit 0' TERM INT; httpd -f -p {port} -h {WEB_ROOT} & wait")
    return ["/bin/sh", "-c", script, program]


@dataclass(frozen=True)
class Image:
    name: str
    entrypoint: list[str] | None
    cmd: list[str]
    exposed_ports: list[str] = field(default_factory=list)


IMAGES = (
    # The real image: no entrypoint, CMD ["sh"]; critest gives its own command.
    Image(BUSYBOX, None, ["sh"]),
    Image(NGINX, None, _web_server(80, "nginx: master process"), ["80/tcp"]),
    Image(HTTPD, None, _web_server(80, "httpd-foreground"), ["80/tcp"]),
    Image(HOSTNET_NGINX, None, _web_server(HOSTNET_NGINX_PORT, "nginx: master process"),
          [f"{HOSTNET_NGINX_PORT}/tcp"]),
)


def e2e_rootfs(dest: Path) -> Path:
    """`dest` as the images' root filesystem: static busybox, its applets as hard links, a web root."""
    busybox = require("busybox", "busybox-static")
    if run(["ldd", busybox], check=False).returncode == 0:
        raise AssertionError(f"{busybox} is dynamically linked: apt-get install busybox-static")
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var", WEB_ROOT[1:]):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    binary = dest / "bin" / "busybox"
    shutil.copy2(busybox, binary)
    for applet in run([busybox, "--list"]).stdout.split():
        link = dest / "bin" / applet
        if not link.exists():
            os.link(binary, link)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (dest / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (dest / "etc" / "resolv.conf").write_text("")
    (dest / WEB_ROOT[1:] / "index.html").write_text(INDEX_HTML)
    return dest


def build_archives(dest: Path) -> dict[str, Path]:
    """Every stand-in as a docker-archive tar under `dest`, by image name."""
    rootfs = e2e_rootfs(dest / "rootfs")
    archives = {}
    for i, image in enumerate(IMAGES):
        archives[image.name] = docker_archive(
            rootfs, dest / f"image-{i}.tar", image.name, entrypoint=image.entrypoint,
            cmd=image.cmd, exposed_ports=image.exposed_ports)
    return archives
