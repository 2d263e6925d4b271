# The two commands of the README: `make demo` and `make test`. Both install what is missing.
FERRYMAN := .venv/bin/ferryman
PYTEST_ARGS ?=

.PHONY: setup demo test unit lint stack-up stack-down bench bench-exposure bench-overhead \
	bench-triggers bench-many test-kubernetes

setup:
	@sh .ci/bootstrap

stack-up: setup
	@$(FERRYMAN) stack up

stack-down:
	@$(FERRYMAN) stack down

demo: stack-up
	@sh examples/demo.sh

# The whole suite: independent apps side by side, then the disruptive tests alone, then the
# Kubernetes test bed's (its binaries build in the background meanwhile); see the script.
test: stack-up
	@sh devstack/run-tests.sh $(PYTEST_ARGS)

# Only the Kubernetes test bed's tests (its binaries are built once per machine, tens of
# minutes the first time).
test-kubernetes: stack-up
	@.venv/bin/pytest -m kubernetes $(PYTEST_ARGS)

unit: setup
	@.venv/bin/pytest -m "not stack and not kubernetes" $(PYTEST_ARGS)

lint: setup
	@.venv/bin/ruff check flows tasks devstack tests bench

# The benchmarks print tables and write bench/results/*.json; never part of `make test`.
bench: bench-exposure bench-overhead bench-triggers bench-many

# Its Kubernetes rows need the test bed (its binaries: tens of minutes the first time).
bench-exposure: setup
	@$(FERRYMAN) stack up --kubernetes
	@.venv/bin/python -m bench.exposure

bench-overhead: stack-up
	@.venv/bin/python -m bench.overhead

bench-triggers: stack-up
	@.venv/bin/python -m bench.trigger_latency

bench-many: stack-up
	@.venv/bin/python -m bench.many_apps
