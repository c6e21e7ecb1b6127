#!/usr/bin/env bash
# The main job on one machine, as root: build the executables, install them
# into a temporary prefix, make a node (a network namespace with an uplink)
# and two pods, ADD both, show the routes, ping, DEL both. Everything it makes
# is removed at the end, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/temp-install.sh
temp_install calico-py-demo
node=cpdemo-node up=cpdemo-up
pods=(cpdemo-pod1 cpdemo-pod2)

cleanup() {
    for ns in "${pods[@]}" "$node" "$up"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$prefix"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a node: namespace $node, uplink 10.250.99.2/24, default route via its upstream"
for ns in "$node" "$up" "${pods[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$node" link add eth0 type veth peer name uplink netns "$up"
ip -n "$node" addr add 10.250.99.2/24 dev eth0 && ip -n "$node" link set eth0 up
ip -n "$up" addr add 10.250.99.1/24 dev uplink && ip -n "$up" link set uplink up
ip -n "$node" route add default via 10.250.99.1
ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1

# The installed conflist holds the node's block; the demo keeps its store apart.
conflist="$prefix/etc/cni/net.d/10-calico-py.conflist"
conf=$(.venv/bin/python - "$conflist" "$prefix/ipam" <<'PY'
import json, sys
conflist = json.load(open(sys.argv[1]))
plugin = conflist["plugins"][0]
plugin["ipam"]["dataDir"] = sys.argv[2]
print(json.dumps({"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}))
PY
)

cni() {  # cni VERB POD [prevResult]
    local netns=/var/run/netns/$2
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$1" CNI_CONTAINERID="demo-$2" \
        CNI_NETNS="$netns" CNI_IFNAME=eth0 CNI_PATH="$bin" \
        CNI_ARGS="K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$2" \
        ip netns exec "$node" "$bin/calico-py" <<<"$conf"
}

for pod in "${pods[@]}"; do
    step "ADD $pod"
    cni ADD "$pod" | .venv/bin/python -m json.tool
done

step "node routes (ip -n $node route)"
ip -n "$node" route
step "pod routes (ip -n ${pods[0]} route) and address"
ip -n "${pods[0]}" route
ip -n "${pods[0]}" -br addr show dev eth0

addr2=$(ip -n "${pods[1]}" -j addr show dev eth0 | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["addr_info"][0]["local"])')
step "ping ${pods[1]} ($addr2) from ${pods[0]}, and from the node"
ip netns exec "${pods[0]}" ping -c 2 -W 2 "$addr2"
ip netns exec "$node" ping -c 2 -W 2 "$addr2"

step "calico-py ipam show"
"$bin/calico-py" ipam show --conf <(.venv/bin/python -c 'import json,sys; c=json.loads(sys.argv[1]); print(json.dumps(c))' "$conf") || true

for pod in "${pods[@]}"; do
    step "DEL $pod"
    cni DEL "$pod" && echo "ok"
done
step "node routes after DEL"
ip -n "$node" route
