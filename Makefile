# The two commands people need: `make run` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The compiled build (setup.py): rebuilt when a module it compiles, or its list, changes.
COMPILED_SOURCES := $(shell grep -o '"caboose/[a-z0-9_/]*\.py"' setup.py | tr -d '"')
BUILT := $(VENV)/.compiled

.PHONY: run grpc-example test test-pure test-compiled test-all build lint tools bench \
	bench-client bench-core autobahn clean test-python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Pure Python first (quick), then $(BUILT) compiles once, with the venv's own mypyc.
$(STAMP): pyproject.toml | $(BIN)/python
	CABOOSE_COMPILED=0 $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# CABOOSE_COMPILED=1: fail here, naming the reason, rather than test pure Python twice.
$(BUILT): $(STAMP) setup.py $(COMPILED_SOURCES)
	CABOOSE_COMPILED=1 $(BIN)/pip install -q --no-deps --no-build-isolation -e . \
		>$(VENV)/build.log 2>&1 || { tail -n 30 $(VENV)/build.log; exit 1; }
	touch $(BUILT)

build: $(BUILT)
	$(BIN)/caboose --version

run: $(BUILT)
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
# The suite runs twice: against the compiled build and against the same sources interpreted
# (CABOOSE_COMPILED picks one at import: caboose/_impl.py).
PYTEST := PYTHONNODEBUGRANGES=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=15
test: test-compiled test-pure

test-compiled: $(BUILT) tools lint
	CABOOSE_COMPILED=1 $(PYTEST)

test-pure: $(STAMP) tools lint
	CABOOSE_COMPILED=0 $(PYTEST)

# The suite on another CPython, both builds, in its own venv: make test-python PY=3.13
test-python:
	@test -n "$(PY)" || { echo "test-python: say which CPython, e.g. PY=3.13"; exit 2; }
	$(MAKE) test VENV=.venv-$(PY) PYTHON="$$(bash scripts/pythons.sh $(PY))"

# Every supported CPython found (scripts/pythons.sh: pyenv's and PATH's), both builds each.
test-all:
	@for version in $$(bash scripts/pythons.sh | cut -d' ' -f1); do \
		$(MAKE) test-python PY=$$version || exit 1; \
	done

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
	find caboose -name "*.so" -delete
	rm -rf $(VENV) .venv-3.* build *.so .mypy_cache .ruff_cache .pytest_cache .autobahn
