#!/bin/sh
# Build Prometheus from the Go module pinned in go.mod beside this file (Debian 12's
# prometheus has no Kubernetes service discovery), once per machine, into
#   ${FERRYMAN_PROMETHEUS_CACHE:-/var/cache/ferryman/prometheus}/<version>/{prometheus,promtool}
# and print that folder on the last line. Reused while its BUILD-ID matches go.mod + go.sum.
# `build.sh --where` prints the folder and builds nothing.
set -eu
cd "$(dirname "$0")"
. ../go-build.sh
export PATH="/usr/local/go/bin:$PATH"  # Go 1.24 or later; Debian 12's golang-go is 1.19

module=$(awk '$1 == "github.com/prometheus/prometheus" && $2 ~ /^v/ {print $2}' go.mod)
version="v2.${module#v0.}"  # module v0.42.0 is Prometheus 2.42.0
out="${FERRYMAN_PROMETHEUS_CACHE:-/var/cache/ferryman/prometheus}/$version"
[ "${1:-}" = --where ] && { echo "$out"; exit 0; }
build_id=$(cat go.mod go.sum | sha256sum | cut -c1-16)
one_build_at_a_time "$(dirname "$out")"
if [ -x "$out/prometheus" ] && [ -x "$out/promtool" ] && [ "$(cat "$out/BUILD-ID" 2>/dev/null)" = "$build_id" ]; then
    echo "build.sh: prometheus $version already built"
    echo "$out"
    exit 0
fi
tmp=$(mktemp -d "$(dirname "$out")/.build-$version.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
v=github.com/prometheus/common/version
start=$(date +%s)
tries nice -n 19 go build -trimpath \
    -ldflags "-s -w -X $v.Version=${version#v} -X $v.Branch=module -X $v.Revision=$module" \
    -o "$tmp/" github.com/prometheus/prometheus/cmd/prometheus \
    github.com/prometheus/prometheus/cmd/promtool
echo "$build_id" > "$tmp/BUILD-ID"
chmod 755 "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built prometheus $version in $(( $(date +%s) - start ))s"
echo "$out"
