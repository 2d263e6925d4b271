#!/bin/sh
# Build the static Go binary of one example (demo-app, traffic) into a Docker build context.
#
#   examples/build-static.sh SRCDIR [OUTDIR]   (the binary is named after SRCDIR;
#                                              OUTDIR defaults to SRCDIR)
#
# No base image can be pulled, so the image is FROM scratch and the binary
# must be compiled on the host beforehand. When OUTDIR is elsewhere, the
# Dockerfile and .dockerignore are copied too, so OUTDIR is a complete context.
set -eu

src=$(cd "$1" && pwd)
name=$(basename "$src")
shift

out=${1:-$src}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The go tool needs a writable build cache; $HOME may be read-only or unset
# (e.g. when run as a service user).
if [ -z "${GOCACHE:-}" ] && ! { [ -n "${HOME:-}" ] && [ -w "$HOME" ]; }; then
    GOCACHE=${TMPDIR:-/tmp}/ferryman-gocache-$(id -u)
    export GOCACHE
fi

# Idempotent: rebuilding would change the mtime for nothing.
if [ -x "$out/$name" ] && [ "$out/$name" -nt "$src/main.go" ] && [ "$out/$name" -nt "$src/go.mod" ]; then
    echo "$out/$name is up to date"
else
    (cd "$src" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o "$out/$name" .)
    echo "built $out/$name"
fi

if [ "$out" != "$src" ]; then
    cp "$src/Dockerfile" "$src/.dockerignore" "$out/"
fi
