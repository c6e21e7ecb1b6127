#!/usr/bin/env bash
# Three nodes on one machine, as root: an underlay namespace with a bridge and
# etcd, three node namespaces each running `calico-py node run`, one pod per
# node; shows each node's `ip route`, pings every pod from every pod, then
# removes everything, also when a step fails.
#
#   bash scripts/cluster-demo.sh [Off|VXLAN|VXLANCrossSubnet]   (default Off: BGP through BIRD)
#
# VXLAN and VXLANCrossSubnet put node 3 in another subnet, behind a router.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-Off}
case "$mode" in Off|VXLAN|VXLANCrossSubnet) ;; *) echo "usage: $0 [Off|VXLAN|VXLANCrossSubnet]" >&2; exit 2;; esac

. scripts/temp-install.sh
temp_install calico-py-cluster
ul=cpdemo-ul rt=cpdemo-rt
nodes=(cpdemo-n1 cpdemo-n2 cpdemo-n3)

cleanup() {
    for ns in "${nodes[@]}" "${nodes[@]/%/-pod}" "$rt" "$ul"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$prefix"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# etcd keeps only its last 1000 revisions (README, "Several nodes"): idle nodes write
# nothing, but every change adds one, and nothing else would ever drop them.
step "underlay $ul: bridge 10.99.0.1/24 and etcd on it"
ip netns add "$ul"; ip -n "$ul" link set lo up
ip -n "$ul" link add br0 type bridge && ip -n "$ul" addr add 10.99.0.1/24 dev br0
ip -n "$ul" link set br0 up
in_ns "$ul" sysctl -qw net.ipv4.ip_forward=1
in_ns "$ul" etcd --name demo --data-dir "$prefix/etcd" \
    --listen-client-urls http://10.99.0.1:23790,http://127.0.0.1:23790 \
    --advertise-client-urls http://10.99.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
    --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster demo=http://127.0.0.1:23800 \
    --auto-compaction-mode revision --auto-compaction-retention 1000 >"$prefix/etcd.log" 2>&1 &
until in_ns "$ul" etcdctl --endpoints http://127.0.0.1:23790 endpoint health >/dev/null 2>&1; do sleep 0.3; done

attach() {  # attach NODE BRIDGE-NS BRIDGE ADDRESS/LEN GATEWAY PEER-NAME
    ip netns add "$1"; ip -n "$1" link set lo up
    ip -n "$1" link add eth0 type veth peer name "$6" netns "$2"
    ip -n "$2" link set "$6" master "$3" up
    ip -n "$1" addr add "$4" dev eth0 && ip -n "$1" link set eth0 up
    ip -n "$1" route add default via "$5"
    in_ns "$1" sysctl -qw net.ipv4.ip_forward=1
}
attach cpdemo-n1 "$ul" br0 10.99.0.11/24 10.99.0.1 v1
attach cpdemo-n2 "$ul" br0 10.99.0.12/24 10.99.0.1 v2
if [ "$mode" = Off ]; then
    attach cpdemo-n3 "$ul" br0 10.99.0.13/24 10.99.0.1 v3
else
    step "router $rt: 10.99.0.254 on the underlay, 10.99.1.1/24 for node 3"
    ip netns add "$rt"; ip -n "$rt" link set lo up
    ip -n "$rt" link add eth0 type veth peer name vrt netns "$ul"
    ip -n "$ul" link set vrt master br0 up
    ip -n "$rt" addr add 10.99.0.254/24 dev eth0 && ip -n "$rt" link set eth0 up
    ip -n "$rt" link add br1 type bridge && ip -n "$rt" addr add 10.99.1.1/24 dev br1
    ip -n "$rt" link set br1 up
    in_ns "$rt" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$ul" route add 10.99.1.0/24 via 10.99.0.254
    attach cpdemo-n3 "$rt" br1 10.99.1.13/24 10.99.1.1 v3
fi

step "calico-py node run in each node (encapsulation $mode)"
for node in "${nodes[@]}"; do
    dir="$prefix/$node" && mkdir -p "$dir"
    cat >"$dir/node.yaml" <<EOF
etcd_endpoints: [http://10.99.0.1:23790]
pool: 192.168.0.0/16
encapsulation: "$mode"
nodename: $node
ip_autodetection: can-reach=10.99.0.1
state_file: $dir/node-state.json
cni_conflist: $dir/net.conflist
bird_dir: $dir/bird
mtu_file: $dir/mtu
EOF
    cat >"$dir/net.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "calico-py",
 "mtu_file_path": "$dir/mtu", "ipam": {"type": "calico-py-ipam", "dataDir": "$dir/ipam",
 "nodeStateFile": "$dir/node-state.json"}}]}
EOF
    in_ns "$node" "$bin/calico-py" node run --config "$dir/node.yaml" >"$dir/node.log" 2>&1 &
done
for node in "${nodes[@]}"; do until [ -s "$prefix/$node/mtu" ]; do sleep 0.2; done; done

pod_ips=()
for node in "${nodes[@]}"; do
    dir="$prefix/$node" pod="$node-pod"
    ip netns add "$pod"
    conf=$(.venv/bin/python -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps({"cniVersion": c["cniVersion"], "name": c["name"], **c["plugins"][0]}))' "$dir/net.conflist")
    result=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=ADD CNI_CONTAINERID="demo-$pod" \
        CNI_NETNS="/var/run/netns/$pod" CNI_IFNAME=eth0 CNI_PATH="$bin" \
        ip netns exec "$node" "$bin/calico-py" <<<"$conf")
    pod_ips+=("$(.venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])["ips"][0]["address"].split("/")[0])' "$result")")
done
step "pods: ${pod_ips[*]}; waiting for each node to route to the other two blocks"
routes_to_others() { ip -n "$1" route | grep -v '^default' | grep -c ' via ' || true; }
for node in "${nodes[@]}"; do
    for _ in $(seq 100); do [ "$(routes_to_others "$node")" -ge 2 ] && break; sleep 0.3; done
done

step "calico-py node status (on ${nodes[0]})"
in_ns "${nodes[0]}" "$bin/calico-py" node status --config "$prefix/${nodes[0]}/node.yaml"
for node in "${nodes[@]}"; do
    step "ip route on $node"
    ip -n "$node" route
done
for i in 0 1 2; do
    for j in 0 1 2; do
        [ "$i" = "$j" ] && continue
        step "ping ${pod_ips[$j]} (pod on ${nodes[$j]}) from the pod on ${nodes[$i]}"
        in_ns "${nodes[$i]}-pod" ping -c 2 -i 0.2 -W 2 "${pod_ips[$j]}"
    done
done

explain() {
    in_ns "${nodes[0]}" "$bin/calico-py" explain "${pod_ips[0]}" "${pod_ips[2]}" \
        --conf "$prefix/${nodes[0]}/net.conflist" --config "$prefix/${nodes[0]}/node.yaml"
}
step "calico-py explain ${pod_ips[0]} ${pod_ips[2]} (on ${nodes[0]}): the path, hop by hop"
explain
block3=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocks"][0])' \
    "$prefix/${nodes[2]}/node-state.json")
step "the same after deleting ${nodes[0]}'s route for $block3 (${nodes[2]}'s block)"
ip -n "${nodes[0]}" route del "$block3"
explain || true
