#!/usr/bin/env bash
# Benchmark caboose against peer ASGI servers on benchmarks/hello.py:app: HTTP/1.1 with wrk
# (uvicorn, granian, h2corn), HTTP/2 cleartext with h2load (uvicorn's experimental HTTP/2,
# hypercorn, granian, h2corn), WebSocket echo, and the scale-* scenarios (streams on one
# connection, RSS with 10,000 idle connections, time to first byte of a 100 MiB body); opt-in,
# gRPC on examples/grpc_echo's connectrpc app (hypercorn, h2corn) with the grpcio client
# (benchmarks/grpc_load.py) and with h2load. Every table reports server CPU per request.
#
#   bash benchmarks/run.sh                      # or: make bench (every default scenario)
#   BENCH_SCENARIOS=scale bash benchmarks/run.sh   # the scale-* scenarios alone
#   BENCH_DURATION=3 BENCH_ROUNDS=1 bash benchmarks/run.sh
#   BENCH_SERVERS=caboose,uvicorn bash benchmarks/run.sh
#   BENCH_SCENARIOS=h2-m10,h2-1mib bash benchmarks/run.sh
#   BENCH_SCENARIOS=grpc-unary,grpc-stream bash benchmarks/run.sh
#
# Builds benchmarks/.venv (separate from the dev venv) with the peer servers and an editable
# caboose, installs Debian's wrk and h2load (nghttp2-client) when missing, then hands over to
# benchmarks/bench.py, which starts every server once per scenario, runs interleaved rounds
# against 127.0.0.1 only, prints a Markdown table per scenario and writes
# benchmarks/results/<scenario>-<time>.json. See bench.py's docstring for every BENCH_* knob.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"
PEERS=("uvicorn[standard]" granian hypercorn h2corn)
# The gRPC scenarios: the grpcio client (benchmarks/grpc_load.py) and the connectrpc Echo app,
# whose stubs examples/grpc_echo/stubs.py generates with grpcio-tools and both protoc plugins.
GRPC=(grpcio grpcio-tools protobuf connectrpc protoc-gen-connectrpc grpclib)
# The HTTP clients benchmarks/client_bench.py compares caboose.client with.
CLIENTS=("httpx[http2]" aiohttp niquests)

say() { printf 'bench: %s\n' "$*" >&2; }

# --- the benchmark venv -----------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi

# uvicorn's HTTP/2 (--http zttp --http2) needs zttp. Optional: when it does not install, uvicorn
# shows as "n/a" in the HTTP/2 tables.
OPTIONAL=(zttp)

# Re-install the peers when these lists change, not on every run.
peers_stamp="$VENV/.peers-installed"
if [ ! -f "$peers_stamp" ] || [ "$(cat "$peers_stamp")" != "${PEERS[*]} ${GRPC[*]} ${CLIENTS[*]}" ]; then
    say "installing ${PEERS[*]} ${GRPC[*]} ${CLIENTS[*]}"
    "$VENV/bin/pip" install -q "${PEERS[@]}" "${GRPC[@]}" "${CLIENTS[@]}"
    printf '%s' "${PEERS[*]} ${GRPC[*]} ${CLIENTS[*]}" >"$peers_stamp"
fi
optional_stamp="$VENV/.optional-tried"
if [ ! -f "$optional_stamp" ] || [ "$(cat "$optional_stamp")" != "${OPTIONAL[*]}" ]; then
    for pkg in "${OPTIONAL[@]}"; do
        say "installing $pkg (optional)"
        "$VENV/bin/pip" install -q "$pkg" || say "WARNING: $pkg did not install; going on without"
    done
    printf '%s' "${OPTIONAL[*]}" >"$optional_stamp"
fi

# caboose is editable, so code changes need nothing; re-install when its metadata changes or its
# package appears (an install made before caboose/__init__.py existed maps no package).
caboose_stamp="$VENV/.caboose-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
[ -f "$ROOT/caboose/__init__.py" ] && want="$want+pkg"
if [ ! -f "$caboose_stamp" ] || [ "$(cat "$caboose_stamp")" != "$want" ]; then
    say "installing caboose from $ROOT (editable)"
    # setuptools is chatty on stderr; keep its output unless the install fails.
    if "$VENV/bin/pip" install -q -e "$ROOT" >"$VENV/caboose-install.log" 2>&1; then
        printf '%s' "$want" >"$caboose_stamp"
    else
        tail -n 20 "$VENV/caboose-install.log" >&2
        say "WARNING: installing caboose failed; it will be reported as failed"
    fi
fi

# --- load tools (Debian packages) -------------------------------------------------------------
apt_install() { # package...
    if ! apt-get install -y -qq "$@" >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq "$@" >/dev/null
    fi
}
command -v wrk >/dev/null || { say "installing wrk"; apt_install wrk; }
# h2load serves the h2-*, scale-m* and grpc-*-h2load scenarios; curl the scale-ttfb-* ones.
wanted=",${BENCH_SCENARIOS:-h2}"
if [[ $wanted == *,h2* || $wanted == *,scale* || $wanted == *-h2load* ]] \
    && ! command -v h2load >/dev/null; then
    say "installing h2load (nghttp2-client)"
    apt_install nghttp2-client
fi
command -v curl >/dev/null || { say "installing curl"; apt_install curl; }

# scale-idle-* holds 10,000 connections: the servers and the load tool inherit this limit
# (bench.py raises it too, when started without this script).
ulimit -n "$(ulimit -Hn)" || say "WARNING: could not raise the open-files limit"

# --- run --------------------------------------------------------------------------------------
# exec: bench.py becomes this process, so Ctrl-C and SIGTERM reach it directly and its cleanup
# (stopping each server's process group) runs.
cd "$ROOT"
# BENCH_PART=clients: the client throughput table instead (benchmarks/client_bench.py, on nginx).
if [ "${BENCH_PART:-servers}" = clients ]; then
    command -v nginx >/dev/null || { say "installing nginx"; bash "$ROOT/scripts/install-tools.sh"; }
    exec "$VENV/bin/python" "$HERE/client_bench.py" "$@"
fi
exec "$VENV/bin/python" "$HERE/bench.py" "$@"
