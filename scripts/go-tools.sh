#!/usr/bin/env bash
# Builds pinned upstream Go programs from the Go module proxy and prints their paths.
#
#   scripts/go-tools.sh cnitool|crictl|critest|etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet|e2e.test|ginkgo|agnhost|coredns|all ...
#
# Versions: scripts/go-tools.versions. Everything goes to a cache outside the
# repository, CALICO_PY_GO_TOOLS (default /var/cache/calico-py/go-tools):
# the binaries as <cache>/<program>/<version>/<program>, and the module cache,
# build cache and GOPATH beside them. A binary already there is not rebuilt,
# so only a fresh machine pays for a build. Go is $GO, else /usr/local/go/bin/go
# (cri-tools 1.37 needs Go 1.26; Debian's Go is too old). Only paths go to
# stdout; a failed build names the program and its log on stderr and exits 1.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=go-tools.versions
. "$here/go-tools.versions"

CACHE="$(realpath -m "${CALICO_PY_GO_TOOLS:-/var/cache/calico-py/go-tools}")"
GO="${GO:-/usr/local/go/bin/go}"
PROGRAMS=(cnitool crictl critest etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy
          kubelet e2e.test ginkgo agnhost coredns)

export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off

die() {
    echo "go-tools.sh: $*" >&2
    exit 1
}

usage() {
    local IFS='|'
    die "usage: $0 ${PROGRAMS[*]}|all ..."
}

version_of() {
    case "$1" in
        cnitool) echo "$CNI_VERSION" ;;
        crictl | critest) echo "$CRI_TOOLS_VERSION" ;;
        etcd) echo "$ETCD_VERSION" ;;
        kube-* | kubelet | e2e.test | agnhost) echo "$KUBERNETES_VERSION" ;;
        ginkgo) echo "$GINKGO_VERSION" ;;
        coredns) echo "$COREDNS_VERSION" ;;
    esac
}

# The module's source directory in the module cache (read-only), downloaded if missing.
module_dir() {
    local json dir
    json="$("$GO" mod download -json "$1")" \
        || { echo "go mod download $1 failed: $json" >&2; return 1; }
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    [ -d "$dir" ] || { echo "go mod download $1 gave no source directory: $json" >&2; return 1; }
    echo "$dir"
}

# A module of our own that builds k8s.io/kubernetes/cmd/PROGRAM: k8s.io/kubernetes
# replaces its staging modules with ./staging/src/..., which a dependency cannot;
# here each one is pinned to its published v0.Y.Z instead.
kubernetes_module() {
    local program="$1" src="$2" dir="$3" staging="v0${KUBERNETES_VERSION#v1}"
    mkdir -p "$dir"
    {
        echo "module calico-py.local/$program"
        echo
        sed -n 's/^go \(.*\)$/go \1/p; /^godebug /p' "$src/go.mod"
        echo
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo
        sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*$|replace \1 => \1 '"$staging"'|p' \
            "$src/go.mod"
    } >"$dir/go.mod"
    grep -q '^replace k8s.io/api ' "$dir/go.mod" \
        || die "no staging replace lines found in $src/go.mod"
}

# A module of our own that builds etcd: the server module's root package is
# etcd's main package, and it needs no replace lines from a dependent module.
etcd_module() {
    local src="$1" dir="$2"
    mkdir -p "$dir"
    {
        echo "module calico-py.local/etcd"
        echo
        sed -n 's/^go \(.*\)$/go \1/p' "$src/go.mod"
        echo
        echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    } >"$dir/go.mod"
}

# The version stamps the upstream Makefiles set (else the programs say "unknown").
cri_tools_ldflags() {
    echo "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
}

kubernetes_ldflags() {
    local minor="${KUBERNETES_VERSION#v1.}" pkg flags=""
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

# build PROGRAM OUT: writes the binary to OUT (a temporary name). It runs where
# errexit does not apply (under `if !`), hence every step's `|| return`.
build() {
    local program="$1" out="$2" src mod
    case "$program" in
        cnitool)
            src="$(module_dir "github.com/containernetworking/cni@$CNI_VERSION")" || return
            (cd "$src" && "$GO" build -trimpath -o "$out" ./cnitool)
            ;;
        crictl)
            src="$(module_dir "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")" || return
            (cd "$src" && "$GO" build -trimpath -ldflags "$(cri_tools_ldflags)" -o "$out" ./cmd/crictl)
            ;;
        critest)
            # A Ginkgo suite: a test binary, as cri-tools' own Makefile builds it.
            src="$(module_dir "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")" || return
            (cd "$src" && "$GO" test -c -trimpath -ldflags "$(cri_tools_ldflags)" -o "$out" ./cmd/critest)
            ;;
        etcd)
            src="$(module_dir "go.etcd.io/etcd/server/v3@$ETCD_VERSION")" || return
            mod="$CACHE/etcd/$ETCD_VERSION/module"
            (etcd_module "$src" "$mod") || return
            (cd "$mod" && "$GO" build -trimpath -o "$out" go.etcd.io/etcd/server/v3)
            ;;
        kube-* | kubelet)
            # One module per program: two of these builds may run at once.
            src="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")" || return
            mod="$CACHE/$program/$KUBERNETES_VERSION/module"
            (kubernetes_module "$program" "$src" "$mod") || return
            (cd "$mod" && "$GO" build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out" \
                "k8s.io/kubernetes/cmd/$program")
            ;;
        e2e.test)
            # The upstream end-to-end suite: a Ginkgo test binary, as the release's Makefile builds it.
            src="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")" || return
            mod="$CACHE/$program/$KUBERNETES_VERSION/module"
            (kubernetes_module e2e "$src" "$mod") || return
            (cd "$mod" && "$GO" test -c -trimpath -ldflags "$(kubernetes_ldflags)" -o "$out" \
                k8s.io/kubernetes/test/e2e)
            ;;
        ginkgo)
            # The runner that spreads e2e.test's specs over parallel processes.
            src="$(module_dir "github.com/onsi/ginkgo/v2@$GINKGO_VERSION")" || return
            (cd "$src" && "$GO" build -trimpath -o "$out" ./ginkgo)
            ;;
        agnhost)
            src="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")" || return
            mod="$CACHE/$program/$KUBERNETES_VERSION/module"
            (kubernetes_module agnhost "$src" "$mod") || return
            (cd "$mod" && "$GO" build -trimpath -o "$out" k8s.io/kubernetes/test/images/agnhost) || return
            # The image's porter serves TLS with the certificate the release ships beside it.
            install -m 0644 "$src/test/images/agnhost/porter/localhost.crt" \
                "$src/test/images/agnhost/porter/localhost.key" "$(dirname "$out")/"
            ;;
        coredns)
            # Built in its own module directory, so that its go.mod's replace lines apply.
            src="$(module_dir "github.com/coredns/coredns@$COREDNS_VERSION")" || return
            (cd "$src" && "$GO" build -trimpath -o "$out" .)
            ;;
    esac
}

# Whether PROGRAM's build is all there (agnhost's includes porter's certificate).
built() {
    [ -x "$2" ] || return 1
    [ "$1" != agnhost ] || [ -f "$(dirname "$2")/localhost.key" ]
}

ensure() {
    local program="$1" version dir bin log started
    version="$(version_of "$program")"
    dir="$CACHE/$program/$version"
    bin="$dir/$program"
    log="$dir/build.log"
    mkdir -p "$dir"
    # One build at a time per program and version; a second caller waits, then finds it.
    exec {lock}>"$dir/.lock"
    flock "$lock"
    if ! built "$program" "$bin"; then
        command -v "$GO" >/dev/null \
            || die "building $program $version: no Go at $GO (Go 1.26 is needed; set GO)"
        echo "go-tools.sh: building $program $version into $dir (log: $log)" >&2
        started=$SECONDS
        rm -f "$bin.tmp"
        if ! (build "$program" "$bin.tmp") >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            rm -f "$bin.tmp"
            die "building $program $version failed (log: $log)"
        fi
        mv "$bin.tmp" "$bin"
        echo "go-tools.sh: built $program $version in $((SECONDS - started)) s" >&2
    fi
    exec {lock}>&-
    echo "$bin"
}

[ $# -ge 1 ] || usage
mkdir -p "$CACHE"
cd "$CACHE"  # outside any module: `go mod download module@version` must not touch one
wanted=()
for arg in "$@"; do
    case "$arg" in
        all) wanted+=("${PROGRAMS[@]}") ;;
        cnitool | crictl | critest | etcd | kube-apiserver | kube-controller-manager | kube-scheduler \
            | kube-proxy | kubelet | e2e.test | ginkgo | agnhost | coredns) wanted+=("$arg") ;;
        *) usage ;;
    esac
done
for program in "${wanted[@]}"; do
    ensure "$program"
done
