# Sourced by the build.sh of the test bed's binaries (devstack/kubernetes, devstack/prometheus):
# what building a pinned Go module into a shared cache needs, written once.

# one_build_at_a_time CACHE: hold CACHE/.lock until the script ends, so that a second caller
# (the tests, while `make test`'s background build runs) waits for the first and then finds
# the binaries built.
one_build_at_a_time() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    flock 9
}

# tries COMMAND...: run it up to 3 times. The Go module proxy (or the DNS in front of it)
# sometimes times out; what was downloaded and compiled stays in Go's caches, so a retry resumes.
tries() {
    for attempt in 1 2 3; do
        "$@" && return 0
        echo "build.sh: attempt $attempt failed: $*" >&2
        sleep 15
    done
    return 1
}

export CGO_ENABLED=0  # static binaries, as Kubernetes and Prometheus release them
