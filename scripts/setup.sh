#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for building and running calico-py:
# the Debian packages it needs and a virtualenv in .venv with the pinned
# Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: run as root: it installs Debian packages and creates network namespaces" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-pip python3-dev gcc make binutils \
    iproute2 iputils-ping procps containernetworking-plugins \
    etcd-server etcd-client bird2 strace
# kubectl for the control-plane tests: Debian's kubernetes-client (1.20, a client
# only; namespaces and ConfigMaps work against kube-apiserver 1.36). A kubectl
# another package already installed owns /usr/bin/kubectl and is kept.
if ! command -v kubectl >/dev/null; then
    apt-get install -y -q --no-install-recommends kubernetes-client
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,build,bench]'
