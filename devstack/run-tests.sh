#!/bin/sh
# `make test`: the whole suite, in three phases, on the stack `make stack-up` brought up.
#   1. everything but the Kubernetes tests and the disruptive ones, 4 workers side by side
#      (`--dist loadgroup`: the tests of one app run one after another on one worker);
#   2. the tests that stop, restart or freeze a part of the shared stack, alone;
#   3. the Kubernetes tests, which bring the test bed up first (that restarts Prometheus and
#      the traffic generator with its own targets, so only once nothing else runs).
# The test bed's binaries build meanwhile in the background (once per machine; tens of
# minutes the first time; build.sh runs the compiler at nice 19, so the tests keep their pace).
# Arguments go to every pytest. Every phase runs even when an earlier one failed.
set -u
cd "$(dirname "$0")/.."
mkdir -p .state/logs
log=.state/logs/kubernetes-build.log
(sh devstack/prometheus/build.sh && sh devstack/kubernetes/build.sh) \
    >"$log" 2>&1 &
build=$!
start=$(date +%s)
failed=""

narrowed=$#  # PYTEST_ARGS given: a phase may then rightly have no test to run
phase() {  # phase NAME COMMAND...: run it, note a failure
    name=$1
    shift
    echo "== make test, $name ($(( $(date +%s) - start )) s in)"
    "$@"
    code=$?
    # pytest's 5 is "no tests collected": a whole phase gone is a failure, not a pass,
    # unless PYTEST_ARGS chose a few tests.
    [ "$code" -eq 0 ] || { [ "$code" -eq 5 ] && [ "$narrowed" -gt 0 ]; } \
        || failed="$failed, $name"
}

phase "independent apps side by side" \
    .venv/bin/pytest -n 4 --dist loadgroup -m "not disruptive and not kubernetes" "$@"
phase "disruptive tests alone" .venv/bin/pytest -m "disruptive and not kubernetes" "$@"
echo "== make test, waiting for the Kubernetes binaries ($(( $(date +%s) - start )) s in; log $log)"
wait "$build" || { echo "the background build failed; the test bed builds again:"; tail -20 "$log"; }
# The tests bring the test bed up before the first of them (tests/conftest.py's
# pytest_runtest_setup), or fail each saying why.
phase "Kubernetes test bed" .venv/bin/pytest -m kubernetes "$@"
echo "== make test: $(( $(date +%s) - start )) s${failed:+; failed:${failed#,}}"
[ -z "$failed" ]
