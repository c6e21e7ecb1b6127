#!/usr/bin/env bash
# Runs the whole test suite on Debian 12 as root: installs what it needs,
# then lints, type-checks and runs every test (unit, real-netns, real clients).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/install-client-deps.sh .venv
# kubelet, critest, crictl, cnitool, etcd 3.6 and kube-apiserver from the Go
# module proxy: minutes on a fresh machine, nothing once cached. Built here so a
# failure names the program.
bash scripts/go-tools.sh all >/dev/null

.venv/bin/ruff check .
.venv/bin/mypy cni_calico_py ipam bench tests
.venv/bin/lint-imports
.venv/bin/pytest -q -p no:cacheprovider tests "$@"
