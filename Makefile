# The two commands of the README: `make demo` and `make test`. Both install what is missing.
FERRYMAN := .venv/bin/ferryman
PYTEST_ARGS ?=

.PHONY: setup demo test unit lint stack-up stack-down bench bench-triggers test-kubernetes

setup:
	@sh .ci/bootstrap

stack-up: setup
	@$(FERRYMAN) stack up

stack-down:
	@$(FERRYMAN) stack down

demo: stack-up
	@sh examples/demo.sh

test: stack-up
	@.venv/bin/pytest $(PYTEST_ARGS)

# The Kubernetes test bed: builds its binaries once per machine (tens of minutes), then starts
# the cluster beside the stack and runs the tests marked `kubernetes`.
test-kubernetes: setup
	@$(FERRYMAN) stack up --kubernetes
	@.venv/bin/pytest -m kubernetes $(PYTEST_ARGS)

unit: setup
	@.venv/bin/pytest -m "not stack" $(PYTEST_ARGS)

lint: setup
	@.venv/bin/ruff check flows tasks devstack tests bench

bench: stack-up
	@.venv/bin/python bench/release_times.py

bench-triggers: stack-up
	@.venv/bin/python bench/trigger_latency.py
