#!/bin/sh
# The main job of `make demo`: a first install, a good release that is promoted and a bad
# one (half its answers are 500s) that is rolled back, on the local stack.
set -u
cd "$(dirname "$0")/.."
FERRYMAN=.venv/bin/ferryman
SPEC=deployments/demo/release.yaml

release() {
    expected=$1
    shift
    echo
    echo "== ferryman release $SPEC $*"
    $FERRYMAN release "$SPEC" "$@"
    code=$?
    if [ "$code" != "$expected" ]; then
        echo "demo: expected exit code $expected, got $code" >&2
        exit 1
    fi
}

release 0 --version 1.0.0
release 0 --version 1.1.0
release 3 --version 1.2.0 --build-arg FAIL_RATE=0.5

echo
echo "== ferryman status $SPEC"
$FERRYMAN status "$SPEC"
echo
echo "Prefect UI: http://127.0.0.1:4200/runs  (the three release runs, with their task runs)"
echo "The registry also reported these pushes to the webhook receiver: the release/on-push"
echo "runs they started end Skipped, since Ferryman had released those images itself."
