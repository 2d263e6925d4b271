#!/bin/sh
# Build the Kubernetes test bed's binaries from the Go modules pinned in go.mod beside this
# file, into a cache outside the checkout, once per machine:
#   ${FERRYMAN_K8S_CACHE:-/var/cache/ferryman/kubernetes}/<kubernetes version>/
# Prints that folder on the last line. A folder whose BUILD-ID matches go.mod, go.sum and the
# pause program is reused as it is; anything else is rebuilt (into a temporary folder, moved
# in at the end, so an interrupted build never leaves a half-filled cache).
# GOCACHE / GOMODCACHE are the caller's: set them to empty folders to time a cold build.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
. ../go-build.sh
# Kubernetes 1.35 needs Go 1.25 or later: /usr/local/go's before Debian 12's golang-go (1.19).
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
if ! go list -m >/dev/null 2>&1; then
    echo "build.sh: $(go version) cannot build this module (Go 1.25 or later needed)" >&2
    exit 1
fi

version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' go.mod)
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
cache=${FERRYMAN_K8S_CACHE:-/var/cache/ferryman/kubernetes}
out="$cache/$version"
build_id=$(cat go.mod go.sum pause/main.go | sha256sum | cut -c1-16)
binaries="pause etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

one_build_at_a_time "$cache"

complete=yes
for b in $binaries; do [ -x "$out/$b" ] || complete=no; done
if [ "$complete" = yes ] && [ "$(cat "$out/BUILD-ID" 2>/dev/null)" = "$build_id" ]; then
    echo "build.sh: $version already built"
    echo "$out"
    exit 0
fi

tmp=$(mktemp -d "$cache/.build-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# What `make` in the Kubernetes tree stamps into its binaries, so `--version`, the node's
# kubeletVersion and the API server's /version tell the real release, not v0.0.0-master.
minor=$(echo "$version" | cut -d. -f2)
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp="$stamp -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp="$stamp -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
# Static binaries (as Kubernetes releases them); nice, so the machine's other work goes on.
tries nice -n 19 go build -trimpath -ldflags "-s -w $stamp" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy
tries nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
tries nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./pause
echo "$build_id" > "$tmp/BUILD-ID"
chmod 755 "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built $version in $(( $(date +%s) - start ))s"
echo "$out"
