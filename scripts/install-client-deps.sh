#!/bin/bash
# Install what tests/clients needs on a fresh Debian 12 (run as root).
#
#   scripts/install-client-deps.sh [VENV]
#
# Debian packages: the runtimes the end-to-end tests drive (containerd + runc,
# podman + catatonit), Go and Debian's libcni source for the project's libcni
# client, busybox-static for the container rootfs, the reference plugins
# (loopback), ping and iproute2. Python packages (grpcio, grpcio-tools for the
# CRI client) go into VENV's python, or the python on PATH when VENV is absent.
set -euo pipefail

APT_PACKAGES=(
    make
    binutils                      # objdump/strip for PyInstaller
    containerd
    runc
    podman
    catatonit
    golang-go
    golang-github-appc-cni-dev
    busybox-static
    containernetworking-plugins   # loopback, and portmap (hostPort) chained after the plugin
    iptables                      # portmap's DNAT rules
    iputils-ping
    iproute2
    util-linux                    # unshare, for `ctr run --cni` in a private mount namespace
    curl                          # the e2e images' tools (scripts/build_e2e_images.py): curl,
    netcat-openbsd                #   nc,
    bind9-dnsutils                #   dig
)
PIP_PACKAGES=(
    grpcio==1.85.1
    grpcio-tools==1.85.1
)

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: run as root (apt-get install)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

if [ $# -ge 1 ] && [ -n "$1" ]; then
    python="$1/bin/python"
else
    python="$(command -v python3)"
fi
"$python" -m pip install -q "${PIP_PACKAGES[@]}"
