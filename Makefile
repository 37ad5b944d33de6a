# The two commands people need: `make run` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run grpc-example test lint tools bench bench-client bench-core autobahn clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/caboose caboose.demo:app --host 127.0.0.1 --port 8000

# The gRPC example (examples/grpc_echo): GRPC_APP=connect_app (connectrpc) or asgi_app.
GRPC_APP ?= connect_app
grpc-example: $(STAMP)
	$(BIN)/caboose examples.grpc_echo.$(GRPC_APP):app --host 127.0.0.1 --port 50051

# Debian tools the integration tests drive (curl, nghttp, h2load, nginx, haproxy, chromium).
tools:
	@bash scripts/install-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check caboose tests benchmarks scripts examples
	$(BIN)/ruff format --check caboose tests benchmarks scripts examples
	$(BIN)/mypy caboose

# PYTHONNODEBUGRANGES: CPython 3.11.7's traceback carets call ast.parse, and one made in a test
# server's thread while its exception chain is printed can leave the ast module's recursion
# counter off for the main thread; pytest's next ast.parse then dies with "SystemError: AST
# constructor recursion depth mismatch" and a failing test shows as INTERNALERROR. Without
# caret ranges the server threads never parse.
#
# TEST_WORKERS: pytest-xdist processes. Most of the suite waits (on servers, child processes,
# curl, nginx, timers) rather than computes, so 4 on the 2 cores measured fastest (one process:
# 345 s; -n 2: 150 s; -n 4: 90-110 s; -n 6 and 8: no faster, more CPU spent on contention).
# worksteal hands the long tests left at the end to idle workers. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4
test: $(STAMP) tools lint
	PYTHONNODEBUGRANGES=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

# The Autobahn|Testsuite fuzzing client, every case group but 9 (performance), against a
# WebSocket echo endpoint (scripts/autobahn.py; it installs the suite for Python 2.7).
# AUTOBAHN_ARGS="--cases '1.*' --report DIR" narrows the run and keeps the HTML report.
autobahn: $(STAMP)
	$(BIN)/python scripts/autobahn.py $(AUTOBAHN_ARGS)

# The servers (benchmarks/bench.py), then the clients (benchmarks/client_bench.py).
bench: $(STAMP)
	bash benchmarks/run.sh; status=$$?; BENCH_PART=clients bash benchmarks/run.sh && exit $$status

bench-client: $(STAMP)
	BENCH_PART=clients bash benchmarks/run.sh

bench-core: $(STAMP)
	$(BIN)/python benchmarks/core_h2.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .autobahn
