#!/usr/bin/env bash
# A real Kubernetes cluster of three nodes on one machine, as root, networked by
# calico-py installed the way an operator installs it: etcd, kube-apiserver,
# kube-scheduler and kube-controller-manager in an underlay namespace; three node
# namespaces, each with containerd, a kubelet and kube-proxy; the plugin's image
# imported into each node's containerd and `kubectl apply -f
# conf/kubernetes/calico-py.yaml`. Then a Deployment of six pods and a Service,
# `kubectl get`, each node's `ip route`, pings across nodes and the Service, and
# everything removed, also when a step fails.
#
#   bash scripts/k8s-demo.sh [bgp|vxlan] [kubernetes|etcd]   (default: bgp kubernetes)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-bgp} datastore=${2:-kubernetes}
case "$mode" in bgp|vxlan) ;; *) echo "usage: $0 [bgp|vxlan] [kubernetes|etcd]" >&2; exit 2;; esac
case "$datastore" in kubernetes|etcd) ;; *) echo "usage: $0 [bgp|vxlan] [kubernetes|etcd]" >&2; exit 2;; esac

. scripts/temp-install.sh
temp_install calico-py-k8s
trap 'rm -rf "$prefix"' EXIT
bash scripts/install-client-deps.sh .venv >/dev/null
bash scripts/go-tools.sh etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy \
    kubelet >/dev/null
.venv/bin/python -m tests.k8s.demo "$bin" "$mode" --datastore "$datastore"
