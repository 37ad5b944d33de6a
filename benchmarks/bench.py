"""Benchmark driver: caboose against peer ASGI servers on the same hello-world app (and, for
gRPC, on the same Echo app).

Run it through ``benchmarks/run.sh`` (or ``make bench``), which builds the separate benchmark venv
and then executes this file with that venv's Python. Standard library only.

A *scenario* is one kind of load: the servers to compare, the app they serve, the path to
request, how to load one server, how to read the load tool's output, how to tell that a server
is up, and what to prepare before the servers start. A new one is one more ``Scenario`` in
``SCENARIOS``; nothing else has to change. By default ``make bench`` runs:

    h1        HTTP/1.1 keep-alive GET /, wrk -c64 (caboose, uvicorn, granian, h2corn)
    h2-m10    HTTP/2 cleartext with prior knowledge, GET /, h2load -c10 -m10
    h2-m100   the same with -m100 (100 concurrent streams per connection)
    h2-1mib   GET /1mib (a 1 MiB body), h2load -c10 -m10; req/s and body MiB/s
    ws-1c-32b, ws-50c-32b, ws-1c-64k, ws-50c-64k
              WebSocket echo over HTTP/1.1 (any path of hello.py echoes): messages/s over 1
              and 50 connections, 32-byte and 64 KiB binary messages, 8 in flight on each
              connection, from benchmarks/ws_load.py (caboose, uvicorn on websockets,
              hypercorn on wsproto, granian, h2corn without --grpc)
    scale-m1, scale-m10, scale-m100, scale-m1000
              HTTP/2, GET /, 1, 10, 100 and 1,000 concurrent streams on ONE connection,
              h2load -c1 -mN; req/s and p99; the table says how many streams each server
              allows (its SETTINGS_MAX_CONCURRENT_STREAMS)
    scale-idle-h1, scale-idle-h2
              server RSS (its process tree) idle, then with 10,000 idle keep-alive
              connections (BENCH_IDLE_CONNECTIONS) that each made one GET / over HTTP/1.1,
              or over h2c after the preface and SETTINGS; MiB and KiB per connection, from
              benchmarks/scale_load.py; one round on a fresh server, no warm-up
    scale-ttfb-h1, scale-ttfb-h2
              GET /stream, 100 MiB in 64 KiB body messages, over HTTP/1.1 and h2c: time to
              first byte and total time (from curl's request, its connect left out) and MiB/s,
              medians of BENCH_TTFB_TRANSFERS curl runs (scale_load.py ttfb) per round

``BENCH_SCENARIOS=scale`` runs the scale-* ones alone (``default`` names the default list).
Every scale scenario runs caboose, granian, h2corn, uvicorn (zttp for HTTP/2) and hypercorn,
each allowed to keep idle connections 600 s and, where it has an option for it, 1,000
concurrent streams (uvicorn with zttp has none).

The h2 scenarios compare caboose, uvicorn (its experimental HTTP/2: ``--http zttp --http2``,
"n/a" when the ``zttp`` package is missing), hypercorn, granian (``--http 2``) and h2corn
(``--no-grpc --workers 1 --runtime-threads 1``, as for WebSocket). Opt-in:
``h2-m10-4k`` and ``h2-m100-4k`` send exactly 4,000 requests per connection (``-n``) instead of
running for BENCH_DURATION: uvicorn with zttp ends every connection after 4,096 streams, and
h2load never reconnects, so only a run shorter than that measures its speed.

Opt-in, gRPC (``BENCH_SCENARIOS=grpc-unary,grpc-stream``): every server runs the connectrpc Echo
app of examples/grpc_echo (``examples.grpc_echo.connect_app:app``, service
``caboose.echo.v1.Echo``) over h2c with prior knowledge, driven by benchmarks/grpc_load.py: the
real grpcio client on ONE channel (one connection), run by the benchmark venv's Python and
pinned like wrk and h2load. Its docstring says which grpcio API it uses and why.

    grpc-unary          Unary calls/s, 50 calls in flight (BENCH_GRPC_CALLS); p99 per call
    grpc-stream         ServerStream messages/s: 10 calls in flight (BENCH_GRPC_STREAMS), each
                        asking for 1,000 messages with 100-byte payloads, one call after
                        another; p99 of whole calls
    grpc-unary-h2load   the same Unary request bytes from h2load -c1 -m50 (no grpcio)
    grpc-stream-h2load  the same ServerStream request from h2load -c1 -m10, messages/s

grpc_load.py counts a call that ends with any status but OK, or a stream that ends short, as an
error. grpcio spends about as much CPU per unary call as a server does, and far more per
streamed message, so on grpc-stream the client saturates its CPU first (around 100,000
messages/s whatever the server, with the servers at 50-75% of theirs: see "load CPU" below) and
the figures compare grpcio, not the servers. The -h2load twins send the same request bytes from
h2load, which costs next to nothing per message, and so measure the servers; h2load sees HTTP
status and bytes only, not grpc-status, so a call whose body carries less than the payload it
asked for (a Trailers-Only error has none) counts as failed. Their request bodies are written to
benchmarks/results/<scenario>.request before the servers start.

gRPC servers: caboose, hypercorn (as for h2) and h2corn 2.x (Rust HTTP/2, Python app loop) with
``--grpc`` (without it h2corn answers application/grpc with 415), ``--workers 1
--runtime-threads 1`` (one process, one Tokio thread: the server gets one CPU, and the default 2
threads measured no faster there), ``--loop uvloop`` and ``--no-access-log`` like the others; it
has no log-level option. granian is left out: its ASGI offers no ``http.response.trailers``
extension, and connectrpc answers every gRPC call UNKNOWN ("ASGI server does not support ASGI
trailers extension") without it. ``grpcio`` is no ASGI server but the reference point: grpcio's
own asyncio server (Google's C core for HTTP/2) with the same service implemented as a grpcio
servicer (examples/grpc_echo/grpcio_server.py). Each server is ready once a grpcio Unary call
comes back right.

Every table has a "load CPU" column: the load tool's CPU time over the run, as a share of one
CPU. Near 100% the tool, not the server, may be what sets the rate, and a note says so.

Every table also has "server CPU per request": utime + stime from /proc/<pid>/stat of the
server and every process below it (a supervisor's workers; every thread of each, so a Rust
server's runtime threads count), read before and after each load run and divided by the
requests it served (messages for WebSocket, connections for scale-idle-*, transfers for
scale-ttfb-*). The kernel counts in clock ticks (10 ms), so a figure from fewer than about a
second of server CPU is coarse. For h2load scenarios the p99 comes from its per-request log
(``--log-file``), which its summary lacks.

Each server is started once per scenario, rounds are interleaved (round 1 = every server in turn,
then round 2, ...) so that machine noise spreads evenly, and the median over rounds is reported.
All traffic goes to 127.0.0.1 only. Servers are stopped by the process group this driver started,
on success, error, Ctrl-C or SIGTERM alike.

Environment knobs (all optional):

    BENCH_DURATION=5         seconds per measured load run (all but h2-m10-4k, h2-m100-4k)
    BENCH_ROUNDS=3           measured rounds per server
    BENCH_WARMUP=1           seconds of unmeasured load per server before round 1 (0: none; a
                             scenario bounded by a request count warms up with one full run)
    BENCH_CONNECTIONS=64     concurrent connections of wrk (h1)
    BENCH_H2_CONNECTIONS=10  concurrent connections of h2load (h2-*)
    BENCH_GRPC_CALLS=50      unary calls in flight on the one connection (grpc-unary*)
    BENCH_GRPC_STREAMS=10    server-streaming calls in flight on it (grpc-stream*)
    BENCH_WS_CONNECTIONS=50  WebSocket connections of the ws-50c-* scenarios
    BENCH_IDLE_CONNECTIONS=10000  idle connections of scale-idle-* (the soft RLIMIT_NOFILE
                             is raised to the hard one, which must leave room for them)
    BENCH_TTFB_TRANSFERS=5   100 MiB transfers per round of scale-ttfb-*
    BENCH_PIN=1|0            pin server to BENCH_SERVER_CPU and the load tool to BENCH_LOAD_CPU
                             (default: on when taskset exists and there are 2+ CPUs)
    BENCH_SERVER_CPU=0, BENCH_LOAD_CPU=1
    BENCH_START_TIMEOUT=10   seconds a server gets to answer its first request
    BENCH_SCENARIOS=default  comma-separated scenario names, or the groups default, scale
    BENCH_SERVERS=           comma-separated server names to keep (default: all of the scenario)
    BENCH_CABOOSE_PURE=1     also run caboose's pure-Python build (CABOOSE_COMPILED=0) as
                             "caboose-pure", beside "caboose" (the compiled build when there)
    BENCH_CABOOSE_BASE=DIR   also run the caboose of checkout DIR (e.g. ``git worktree add DIR
                             <commit>``), pure Python, as "caboose-base": before and after in
                             one interleaved run

A load run with more than 1% failed requests (socket errors, non-2xx/3xx, reset or timed-out
streams) is recorded but left out of the median; a server with no valid run shows as "invalid"
in the table. An h2load run in which the server closed connections before the end is invalid
too, whatever its error count: h2load does not reconnect, so its req/s over the whole run would
understate the server. Its note gives the rate while connected (the sum of h2load's per-client
req/s) instead.

Exit status: 0 when every server produced valid results, 1 when some server failed to start, died
or produced no valid run (the table is printed all the same). Two peer outcomes do not count: a
server that cannot speak the scenario's protocol at all ("n/a") and a peer whose only fault is
closing connections mid-run ("closes connections"). 2 on a bad BENCH_* value, 130 when
interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import proctree  # beside this file, as is the served app
from hello import BODY, LARGE_BODY, LARGE_PATH, STREAM_PATH, STREAM_SIZE

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"  # the only address this harness ever sends traffic to
APP = "benchmarks.hello:app"
BASELINE = "caboose"


# --------------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    rps: float
    p99_ms: float | None
    requests: int | None = None
    errors: int = 0  # socket errors, non-2xx/3xx, failed or timed-out requests
    latency_ms: dict[str, float] = field(default_factory=dict)
    mib_per_s: float | None = None  # response body (HTTP/2 DATA payload) MiB per second
    # h2load: the sum of its per-client req/s, each over that client's own connected time. Equal
    # to rps unless connections ended before the run did.
    connected_rps: float | None = None
    lost_connections: bool = False  # the server closed connections before the run ended
    body_bytes: int | None = None  # h2load: response body (DATA payload) bytes received
    # The load tool's CPU seconds per second of run: near 1.0 the tool, not the server, may be
    # what limits the rate. grpc_load.py reports it over its measured window; for the other
    # tools it is their rusage over the whole run.
    load_cpu_share: float | None = None
    # The server's CPU seconds over the whole load run (its process tree, every thread), and
    # the requests it served in that time, when the tool counts them over a narrower window.
    server_cpu_s: float | None = None
    served: int | None = None
    # Scenario-specific figures (RSS, time to first byte, ...), named as the scenario's columns.
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def server_cpu_us(self) -> float | None:
        """Server CPU microseconds per request (or message) served."""
        served = self.served or self.requests
        if self.server_cpu_s is None or not served:
            return None
        return self.server_cpu_s / served * 1e6


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f} us" if value < 1 else f"{value:.2f} ms"


def _fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_1(value: float) -> str:
    return f"{value:,.1f}"


def _fmt_cpu(us: float) -> str:
    return f"{us:,.1f} µs" if us < 10_000 else f"{us / 1e3:,.0f} ms"


def _fmt_share(value: float) -> str:
    return f"{value:.0%}"


def parse_wrk(out: str) -> Measurement:
    """Read ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise ValueError("no 'Requests/sec' line in wrk output")
    latency = {
        f"p{m[1]}": _to_ms(m[2], m[3])
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    }
    requests = re.search(r"^\s*(\d+) requests in ", out, re.M)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return Measurement(
        rps=float(rps[1]),
        p99_ms=latency.get("p99"),
        requests=int(requests[1]) if requests else None,
        errors=errors,
        latency_ms=latency,
    )


# A run whose per-client rates add up to this much more than its overall rate had clients that
# stopped early: a server ending connections mid-run, since h2load never reconnects.
LOST_CONNECTION_SLACK = 1.10


def parse_h2load(out: str) -> Measurement:
    """Read h2load output. h2load prints no percentiles, so p99 stays unknown; its "time for
    request" row gives min, max and mean."""
    rps = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out, re.M)
    if rps is None:
        raise ValueError("no 'finished in ... req/s' line in h2load output")
    elapsed_s = _to_ms(rps[1], rps[2]) / 1e3
    req = re.search(
        r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
        re.M,
    )
    latency: dict[str, float] = {}
    row = re.search(
        r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out, re.M
    )
    if row:
        latency = {
            "min": _to_ms(row[1], row[2]),
            "max": _to_ms(row[3], row[4]),
            "mean": _to_ms(row[5], row[6]),
        }
    # "traffic: 2.35GB (2524368762) total, 84.81KB (86846) headers (...), 2.35GB (2522873856) data"
    data = re.search(r"^traffic: .*\((\d+)\) data", out, re.M)
    mib_per_s = int(data[1]) / (1 << 20) / elapsed_s if data and elapsed_s > 0 else None
    clients = sum(
        int(n) for n in re.findall(r"^spawning thread #\d+: (\d+) total client", out, re.M)
    )
    per_client = re.search(r"^req/s\s*:\s+[\d.]+\s+[\d.]+\s+([\d.]+)", out, re.M)
    connected = float(per_client[1]) * clients if per_client and clients else None
    errored = int(req[5]) if req else 0
    total_rps = float(rps[3])
    return Measurement(
        rps=total_rps,
        p99_ms=None,
        requests=int(req[3]) if req else None,
        errors=sum(int(req[i]) for i in (4, 5, 6)) if req else 0,
        latency_ms=latency,
        mib_per_s=mib_per_s,
        connected_rps=connected,
        lost_connections=bool(
            errored and connected and connected > LOST_CONNECTION_SLACK * total_rps
        ),
        body_bytes=int(data[1]) if data else None,
    )


def parse_h2load_grpc(messages: int, payload: int) -> Callable[[str], Measurement]:
    """parse_h2load for gRPC calls answered by ``messages`` messages of ``payload`` bytes each:
    the rate becomes messages/s, and, since h2load cannot read grpc-status, every call that the
    received bytes cannot have carried in full counts as failed."""

    def parse(out: str) -> Measurement:
        m = parse_h2load(out)
        if m.requests and m.body_bytes is not None:
            m.errors += m.requests - min(m.requests, m.body_bytes // (messages * payload))
        m.rps *= messages
        if m.connected_rps is not None:
            m.connected_rps *= messages
        return m

    return parse


def parse_grpc_load(out: str) -> Measurement:
    """Read the JSON line of benchmarks/grpc_load.py (its docstring lists the fields)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("no JSON line in grpc_load.py output")
    try:
        r = json.loads(lines[-1])
        return Measurement(
            rps=float(r["rate"]),
            p99_ms=r["latency_ms"].get("p99"),
            requests=int(r["calls"]) + int(r["errors"]),
            errors=int(r["errors"]),
            latency_ms=r["latency_ms"],
            load_cpu_share=float(r["load_cpu_share"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"unreadable grpc_load.py result: {exc!r}") from None


def parse_ws_load(out: str) -> Measurement:
    """Read the JSON line of benchmarks/ws_load.py (its docstring lists the fields)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("no JSON line in ws_load.py output")
    try:
        r = json.loads(lines[-1])
        return Measurement(
            rps=float(r["rate"]),
            p99_ms=r["latency_ms"].get("p99"),
            requests=int(r["messages"]),
            errors=int(r["errors"]),
            latency_ms=r["latency_ms"],
            load_cpu_share=float(r["load_cpu_share"]),
            served=int(r["served"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"unreadable ws_load.py result: {exc!r}") from None


def _json_line(out: str, tool: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"no JSON line in {tool} output")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable {tool} result: {exc!r}") from None
    if not isinstance(result, dict):
        raise ValueError(f"unreadable {tool} result: {lines[-1][:100]}")
    return result


MIB = 1 << 20


def parse_idle(out: str) -> Measurement:
    """Read ``scale_load.py idle``: the rate is connections set up per second, and a connection
    that failed or that the server closed while idle counts as an error."""
    r = _json_line(out, "scale_load.py idle")
    try:
        opened, closed = int(r["opened"]), int(r["closed_by_server"])
        held = opened - closed
        idle, loaded = int(r["rss_idle"]), int(r["rss_open"])
        return Measurement(
            rps=opened / float(r["open_s"]) if r["open_s"] else 0.0,
            p99_ms=None,
            requests=opened,
            errors=int(r["failed"]) + closed,
            load_cpu_share=float(r["load_cpu_share"]),
            extra={
                "held": held,
                "rss_idle_mib": idle / MIB,
                "rss_open_mib": loaded / MIB,
                "kib_per_conn": (loaded - idle) / 1024 / held if held else 0.0,
                "rss_after_mib": int(r["rss_after_close"]) / MIB,
                "open_s": float(r["open_s"]),
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable scale_load.py idle result: {exc!r}") from None


def parse_ttfb(out: str) -> Measurement:
    """Read ``scale_load.py ttfb``: medians over its transfers; the rate is body MiB/s."""
    r = _json_line(out, "scale_load.py ttfb")
    try:
        if not r["transfers"]:
            return Measurement(rps=0.0, p99_ms=None, requests=0, errors=int(r["errors"]))
        ttfb, total = float(r["ttfb_ms"]), float(r["total_ms"])
        return Measurement(
            rps=float(r["mib_per_s"]),
            p99_ms=None,
            requests=int(r["transfers"]),
            errors=int(r["errors"]),
            latency_ms={"ttfb": ttfb, "total": total},
            mib_per_s=float(r["mib_per_s"]),
            extra={"ttfb_ms": ttfb, "total_ms": total},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable scale_load.py ttfb result: {exc!r}") from None


# --------------------------------------------------------------------------- readiness probes


def _recv_until_closed(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def probe_h1(port: int, timeout: float, path: str, expected: bytes) -> str | None:
    """One real HTTP/1.1 GET. Returns None when the answer is right, else what was wrong."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode(
                "ascii"
            )
        )
        data = _recv_until_closed(sock, len(expected) + (1 << 16))
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        return f"unexpected status line {status[:60]!r}"
    if body != expected:
        return f"unexpected body {body[:60]!r} ({len(body)} bytes)"
    return None


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return header + struct.pack(">I", stream) + payload


_H2_MAX_WINDOW = (1 << 31) - 1


def _h2_status_200(block: bytes) -> bool:
    """Whether a response header block starts with :status 200, as servers encode it: indexed
    (static index 8), or a literal on name index 8 whose value is "200", raw or Huffman-coded.
    Only valid for the first response on a connection (nothing in the dynamic table yet)."""
    i = 0
    while i < len(block) and block[i] & 0xE0 == 0x20:  # dynamic table size update(s)
        i += 1
        if block[i - 1] & 0x1F == 0x1F:  # multi-byte integer
            while i < len(block) and block[i] & 0x80:
                i += 1
            i += 1
    if i >= len(block):
        return False
    first = block[i]
    if first & 0x80:
        return first == 0x88
    if first not in (0x48, 0x08, 0x18) or i + 1 >= len(block):  # literal, name index 8
        return False
    size = block[i + 1]
    value = block[i + 2 : i + 2 + (size & 0x7F)]
    return value == (b"\x10\x01" if size & 0x80 else b"200")  # Huffman "200" is 10 01


def probe_h2c(port: int, timeout: float, path: str, expected: bytes) -> str | None:
    """One real HTTP/2 GET over cleartext with prior knowledge (no HPACK library needed)."""
    authority = f"{HOST}:{port}".encode("ascii")
    raw_path = path.encode("ascii")
    if len(authority) > 126 or len(raw_path) > 126:
        raise ValueError("probe_h2c encodes header lengths in one byte")
    # :method GET and :scheme http from the static table; :path (/ indexed, else a literal
    # without indexing, name index 4) and :authority (literal with indexing, name index 1).
    block = b"\x82\x86" + (b"\x84" if path == "/" else b"\x04" + bytes([len(raw_path)]) + raw_path)
    block += b"\x41" + bytes([len(authority)]) + authority
    request = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        # SETTINGS_INITIAL_WINDOW_SIZE at its largest, and the connection window to match, so a
        # large body needs no WINDOW_UPDATE from us.
        + _h2_frame(0x4, 0, 0, struct.pack(">HI", 0x4, _H2_MAX_WINDOW))
        + _h2_frame(0x8, 0, 0, struct.pack(">I", _H2_MAX_WINDOW - 65535))  # WINDOW_UPDATE
        + _h2_frame(0x1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )
    status_ok = False
    body = bytearray()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        buf = b""
        while True:
            while len(buf) < 9:
                chunk = sock.recv(65536)
                if not chunk:
                    return "connection closed before the response ended"
                buf += chunk
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            while len(buf) < 9 + length:
                chunk = sock.recv(65536)
                if not chunk:
                    return "connection closed inside a frame"
                buf += chunk
            payload, buf = buf[9 : 9 + length], buf[9 + length :]
            if kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
                sock.sendall(_h2_frame(0x4, 0x1, 0))
            elif kind == 0x7:  # GOAWAY
                return f"GOAWAY, error code {int.from_bytes(payload[4:8], 'big')}"
            elif kind == 0x3 and stream == 1:  # RST_STREAM
                return f"RST_STREAM, error code {int.from_bytes(payload[:4], 'big')}"
            elif kind == 0x1 and stream == 1:  # HEADERS
                if flags & 0x8:  # PADDED
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                status_ok = status_ok or _h2_status_200(payload)
            elif kind == 0x0 and stream == 1:  # DATA
                if flags & 0x8:
                    payload = payload[1 : len(payload) - payload[0]]
                body += payload
            if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:  # END_STREAM
                break
    if not status_ok:
        return "response status is not 200"
    if body != expected:
        return f"unexpected body {bytes(body[:60])!r} ({len(body)} bytes)"
    return None


def h2_settings(port: int, timeout: float = 5.0) -> dict[int, int]:
    """The SETTINGS a server sends first on an h2c connection, as {identifier: value}."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(0x4, 0, 0))
        buf = b""
        for _ in range(64):  # frames read before giving up on a SETTINGS one
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("connection closed before SETTINGS")
                buf += chunk
            length = int.from_bytes(buf[:3], "big")
            kind, flags, payload = buf[3], buf[4], buf[9 : 9 + length]
            buf = buf[9 + length :]
            if kind == 0x4 and not flags & 0x1:
                return {
                    int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(
                        payload[i + 2 : i + 6], "big"
                    )
                    for i in range(0, len(payload) - 5, 6)
                }
    raise OSError("no SETTINGS frame among the server's first frames")


NO_LIMIT = -1  # a server that sends no SETTINGS_MAX_CONCURRENT_STREAMS allows any number


def inspect_max_streams(port: int) -> dict[str, float]:
    """How many concurrent streams the server allows (SETTINGS_MAX_CONCURRENT_STREAMS)."""
    try:
        return {"max_streams": h2_settings(port).get(0x3, NO_LIMIT)}
    except OSError as exc:
        log(f"reading SETTINGS on port {port} failed: {exc}")
        return {}


GRPC_LOAD = HERE / "grpc_load.py"
GRPC_LOAD = HERE / "grpc_load.py"


def _grpc_load(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run grpc_load.py with this (the benchmark venv's) Python, from the project root."""
    return subprocess.run(
        [sys.executable, str(GRPC_LOAD), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def probe_grpc(port: int, timeout: float, path: str, expected: bytes) -> str | None:
    """One real gRPC Unary call from grpcio (``grpc_load.py probe``): a server is up when the Echo
    service answers right, not when it accepts connections. ``path`` and ``expected`` are the
    HTTP probes' and unused. Each probe is a new process (~0.5 s to import grpc): bench.py itself
    stays standard library only."""
    url = f"http://{HOST}:{port}/"
    try:
        done = _grpc_load("probe", url, "--timeout", f"{timeout:g}", timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return "grpc_load.py probe did not finish"
    return None if done.returncode == 0 else _last_line(done)


def probe_ws(port: int, timeout: float, path: str, expected: bytes) -> str | None:
    """One WebSocket handshake and one echoed message, by benchmarks/ws_load.py."""
    argv = [sys.executable, str(HERE / "ws_load.py"), "probe", f"http://{HOST}:{port}{path}"]
    try:
        done = subprocess.run(
            [*argv, "--timeout", str(timeout)], capture_output=True, text=True, timeout=timeout + 5
        )
    except subprocess.TimeoutExpired:
        return "ws_load.py probe did not finish"
    return None if done.returncode == 0 else _last_line(done)


def prepare_grpc(*args: str) -> Callable[[], str | None]:
    """A scenario's preparation: ``grpc_load.py stubs`` generates the Echo stubs before any
    server imports the app, so no two processes run protoc into examples/grpc_echo/gen at once;
    ``grpc_load.py request ...`` does that and writes a request body for h2load."""

    def prepare() -> str | None:
        try:
            done = _grpc_load(*args, timeout=120)
        except subprocess.TimeoutExpired:
            return f"grpc_load.py {args[0]} did not finish within 120s"
        return None if done.returncode == 0 else _last_line(done)

    return prepare


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Server:
    name: str
    # Command line, split on whitespace, each word formatted with {bin} (the benchmark venv's
    # bin directory), {here} (this directory), {host}, {port} and {app} (the scenario's).
    command: str
    # Modules the server needs for this scenario; when one is missing the server is "n/a" (it
    # cannot serve the protocol at all), not "failed".
    needs: tuple[str, ...] = ()
    # Environment for this server only; a PYTHONPATH here goes before the project root.
    env: tuple[tuple[str, str], ...] = ()

    def argv(self, port: int, app: str) -> list[str]:
        return [
            w.format(bin=VENV_BIN, host=HOST, port=port, app=app, here=HERE)
            for w in self.command.split()
        ]

    def missing(self) -> str | None:
        for module in self.needs:
            try:
                found = importlib.util.find_spec(module) is not None
            except ImportError:
                found = False
            if not found:
                return module
        return None


@dataclass(frozen=True)
class Column:
    """One figure of a scenario's table, read from a server's summary."""

    head: str
    key: str  # a key of the per-server dict summarize() builds
    fmt: Callable[[float], str]
    ratio: str | None = None  # followed by a "caboose/peer (RATIO)" column


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    tool: str  # executable the load command needs
    # Load command, split on whitespace, each word formatted with {duration} (seconds),
    # {connections}, {requests} (requests_per_connection x connections), {url}, {python} (the
    # benchmark venv's), {here} (this directory) and {results} (benchmarks/results).
    load: str
    parse: Callable[[str], Measurement]  # load tool output -> Measurement (ValueError if unread)
    # (port, timeout, path, expected body) -> None if served right
    probe: Callable[[int, float, str, bytes], str | None]
    servers: tuple[Server, ...]  # caboose first; every other one is a peer
    connections_knob: str  # the BENCH_* variable that sets {connections}
    path: str = "/"
    body: bytes = BODY  # what the path answers
    latency: str = "p99"  # the latency figure reported: "p99" (wrk) or "mean" (h2load)
    throughput: bool = False  # report body MiB/s next to req/s
    requests_per_connection: int | None = None  # a run is this many requests, not a duration
    app: str = APP  # what every server serves, as MODULE:ATTRIBUTE from the project root
    unit: str = "req/s"  # what the rate counts
    concurrency: str = "connections"  # what {connections} counts, for the log and the table
    prepare: Callable[[], str | None] | None = None  # run once before the servers; error or None
    extra_time: int = 60  # seconds a timed load run may take beyond its duration
    per: str = "request"  # what the server's CPU time is divided by, for the table
    # Columns of the table in place of rate, latency and MiB/s (the scale scenarios'), then
    # facts that ``inspect(port)`` reads from each server once it is ready.
    columns: tuple[Column, ...] = ()
    inspect: Callable[[int], dict[str, float]] | None = None
    fact_columns: tuple[Column, ...] = ()
    rounds: int | None = None  # measured rounds, instead of BENCH_ROUNDS
    warmup: bool = True  # False: no warm-up run (the memory scenarios measure a fresh server)
    timed: bool = True  # False: a load run is one pass of its own length, not BENCH_DURATION
    probe_path: str | None = None  # probe this path (answering BODY) instead of ``path``

    def load_argv(
        self,
        url: str,
        duration: int,
        connections: int,
        pid: int | str = "PID",
        request_log: Path | str = "LOG",
    ) -> list[str]:
        requests = (self.requests_per_connection or 0) * connections
        words = {"python": sys.executable, "here": HERE, "results": RESULTS, "pid": pid}
        return [
            w.format(
                url=url,
                duration=duration,
                connections=connections,
                requests=requests,
                log=request_log,
                **words,
            )
            for w in self.load.split()
        ]

    def run_length(self, duration: int, connections: int) -> str:
        if not self.timed:
            return "one pass"
        if self.requests_per_connection:
            return f"{self.requests_per_connection * connections:,} requests"
        return f"{duration}s"


# One worker process each, access log off, uvloop, warnings only. caboose mirrors uvicorn's CLI
# and serves HTTP/2 with prior knowledge on the same port (--http2 is on by default).
CABOOSE = Server(
    "caboose",
    "{bin}/caboose {app} --host {host} --port {port} --loop uvloop --no-access-log"
    " --log-level warning",
)
UVICORN_CMD = (
    "{bin}/uvicorn {app} --host {host} --port {port} --loop uvloop --no-access-log"
    " --log-level warning --http "
)
UVICORN_H1 = Server("uvicorn", UVICORN_CMD + "httptools")
# uvicorn's experimental HTTP/2 (0.54+): the zttp protocol, which also takes h2c prior knowledge.
UVICORN_H2 = Server(
    "uvicorn",
    UVICORN_CMD + "zttp --http2",
    needs=("zttp", "uvicorn.protocols.http.auto_zttp_impl"),
)
GRANIAN_CMD = (
    "{bin}/granian {app} --interface asgi --host {host} --port {port} --workers 1 --loop uvloop"
    " --no-access-log --log-level warning --http "
)
GRANIAN_H1 = Server("granian", GRANIAN_CMD + "1")
GRANIAN_H2 = Server("granian", GRANIAN_CMD + "2")
# hypercorn's access log is off unless --access-logfile is given; a cleartext bind takes h2c
# with prior knowledge. hypercorn.toml lifts its 1,000-requests-per-connection limit (see there).
HYPERCORN_CMD = (
    "{bin}/hypercorn {app} --bind {host}:{port} --workers 1 --worker-class uvloop"
    " --log-level warning --config {here}/"
)
HYPERCORN = Server("hypercorn", HYPERCORN_CMD + "hypercorn.toml")
# See the module docstring for why these flags, and why granian serves no gRPC scenario. One
# worker process (under h2corn's supervisor) and one Tokio thread: the server gets one CPU.
H2CORN_CMD = (
    "{bin}/h2corn {app} --bind {host}:{port} --workers 1 --runtime-threads 1 --loop uvloop"
    " --no-access-log"
)
H2CORN = Server("h2corn", H2CORN_CMD + " --grpc")
H2CORN_HTTP = Server("h2corn", H2CORN_CMD + " --no-grpc")  # --no-grpc is its default too
H2_SERVERS = (CABOOSE, UVICORN_H2, HYPERCORN, GRANIAN_H2, H2CORN_HTTP)
# h2load's per-request log ({log}) gives the percentiles its summary lacks.
H2LOAD = "h2load -t1 --log-file={log} -c{connections}"
# Not an ASGI server: grpcio's own asyncio server with the same service (a reference point).
GRPCIO = Server(
    "grpcio", "{bin}/python -m examples.grpc_echo.grpcio_server --host {host} --port {port}"
)
GRPC_SERVERS = (CABOOSE, HYPERCORN, H2CORN, GRPCIO)
GRPC_APP = "examples.grpc_echo.connect_app:app"
UNARY_PAYLOAD = 16  # bytes of payload in each Unary request, echoed back
STREAM_PAYLOAD = 100  # bytes of payload in each streamed message
STREAM_MESSAGES = 1000  # messages each ServerStream call asks for
UNARY_ARGS = f"unary --payload {UNARY_PAYLOAD}"
STREAM_ARGS = f"stream --payload {STREAM_PAYLOAD} --count {STREAM_MESSAGES}"
GRPC_H2LOAD = (
    "h2load -t1 -c1 -m{connections} -D{duration} -H content-type:application/grpc -H te:trailers"
)


def _h2(name: str, description: str, load: str, **kw: Any) -> Scenario:
    kw.setdefault("servers", H2_SERVERS)
    kw.setdefault("connections_knob", "BENCH_H2_CONNECTIONS")
    return Scenario(
        name=name,
        description=f"HTTP/2 cleartext (prior knowledge), {description}, h2load",
        tool="h2load",
        load=f"{H2LOAD} {load} {{url}}",
        parse=parse_h2load,
        probe=probe_h2c,
        latency="p99",
        **kw,
    )


# WebSocket echo over HTTP/1.1: uvicorn on the websockets library (its sans-I/O implementation,
# faster than its legacy one and what its --ws auto picks), hypercorn on
# wsproto, granian and h2corn (--grpc off) on their Rust cores.
WS_SERVERS = (
    CABOOSE,
    Server("uvicorn", UVICORN_CMD + "httptools --ws websockets-sansio"),
    HYPERCORN,
    GRANIAN_H1,
    H2CORN_HTTP,
)


def _ws(name: str, description: str, size: int) -> Scenario:
    return Scenario(
        name=name,
        description=f"WebSocket echo over HTTP/1.1, {description}, ws_load.py",
        tool=sys.executable,
        load=f"{{python}} {{here}}/ws_load.py {{url}} --connections {{connections}} --size {size}"
        " --duration {duration} --inflight 8",
        parse=parse_ws_load,
        probe=probe_ws,
        servers=WS_SERVERS,
        connections_knob="BENCH_WS_CONNECTIONS" if "50c" in name else "BENCH_WS_ONE",
        path="/ws",
        latency="p99",
        throughput=False,
        unit="messages/s",
        concurrency="connections, 8 messages in flight on each",
        per="message",
    )


def _grpc(name: str, description: str, rpc: str, stream: bool, h2load: bool) -> Scenario:
    """A gRPC scenario: ``rpc`` (grpc_load.py's arguments for the call) from grpcio, or, with
    ``h2load``, the same request body, written by grpc_load.py beforehand, from h2load."""
    request = RESULTS / f"{name}.request"
    common: dict[str, Any] = {
        "description": f"gRPC on h2c, {description}",
        "probe": probe_grpc,
        "servers": GRPC_SERVERS,
        "app": GRPC_APP,
        "connections_knob": "BENCH_GRPC_STREAMS" if stream else "BENCH_GRPC_CALLS",
        "concurrency": ("streams" if stream else "calls") + " in flight on one connection",
        "unit": "messages/s" if stream else "calls/s",
        "per": "call",
    }
    if h2load:
        messages, payload = (STREAM_MESSAGES, STREAM_PAYLOAD) if stream else (1, UNARY_PAYLOAD)
        return Scenario(
            name=name,
            tool="h2load",
            load=f"{GRPC_H2LOAD} -d {request} {{url}}",
            parse=parse_h2load_grpc(messages, payload),
            path=f"/caboose.echo.v1.Echo/{'ServerStream' if stream else 'Unary'}",
            latency="mean",
            prepare=prepare_grpc("request", str(request), *rpc.split()),
            **common,
        )
    return Scenario(
        name=name,
        tool=sys.executable,
        load=f"{{python}} {{here}}/grpc_load.py {rpc} {{url}} --duration {{duration}}"
        " --concurrency {connections}",
        parse=parse_grpc_load,
        prepare=prepare_grpc("stubs"),
        **common,
    )


# Scale: the servers as above, plus what lets them hold the load. Idle connections are kept for
# 600 s (caboose, uvicorn and hypercorn close them after 5 s by default, h2corn after 120 s,
# granian's HTTP/1.1 waits at most 60 s for a next request head), and 1,000 concurrent streams
# are allowed on a connection where an option says so: uvicorn with zttp has none, hypercorn
# takes 999 at most (see hypercorn-scale.toml); the table shows what each server advertises.
# granian serves at most --backpressure connections at once (default: backlog / workers, 1,024)
# and leaves the others unanswered, so it gets room for the 10,000 idle ones.
SCALE_STREAMS = 1000
KEEP_IDLE = " --timeout-keep-alive 600"
SCALE_CABOOSE = Server(
    "caboose", CABOOSE.command + KEEP_IDLE + f" --http2-max-concurrent-streams {SCALE_STREAMS}"
)
GRANIAN_ROOM = " --backpressure 16384"
SCALE_GRANIAN_H1 = Server(
    "granian", GRANIAN_H1.command + GRANIAN_ROOM + " --http1-header-read-timeout 60000"
)
SCALE_GRANIAN_H2 = Server(
    "granian",
    GRANIAN_H2.command + GRANIAN_ROOM + f" --http2-max-concurrent-streams {SCALE_STREAMS}",
)
SCALE_H2CORN = Server(
    "h2corn", H2CORN_HTTP.command + KEEP_IDLE + f" --max-concurrent-streams {SCALE_STREAMS}"
)
SCALE_UVICORN_H1 = Server("uvicorn", UVICORN_H1.command + KEEP_IDLE)
SCALE_UVICORN_H2 = Server("uvicorn", UVICORN_H2.command + KEEP_IDLE, needs=UVICORN_H2.needs)
SCALE_HYPERCORN = Server("hypercorn", HYPERCORN_CMD + "hypercorn-scale.toml")
SCALE_H1 = (SCALE_CABOOSE, SCALE_GRANIAN_H1, SCALE_H2CORN, SCALE_UVICORN_H1, SCALE_HYPERCORN)
SCALE_H2 = (SCALE_CABOOSE, SCALE_GRANIAN_H2, SCALE_H2CORN, SCALE_UVICORN_H2, SCALE_HYPERCORN)


def _fmt_streams(value: float) -> str:
    return "no limit" if value == NO_LIMIT else f"{value:,.0f}"


def _streams(count: int) -> Scenario:
    return _h2(
        f"scale-m{count}",
        f"GET / (13 bytes), {count:,} concurrent streams on ONE connection",
        f"-m{count} -D{{duration}}",
        servers=SCALE_H2,
        connections_knob="ONE",
        concurrency=f"connection, {count:,} streams in flight",
        inspect=inspect_max_streams,
        fact_columns=(Column("streams the server allows", "fact_max_streams", _fmt_streams),),
    )


def _fmt_s(value: float) -> str:
    return f"{value:,.1f} s"


IDLE_COLUMNS = (
    Column("connections held", "median_held", _fmt_int),
    Column("RSS idle (MiB)", "median_rss_idle_mib", _fmt_1),
    Column("RSS with them (MiB)", "median_rss_open_mib", _fmt_1),
    Column("KiB per connection", "median_kib_per_conn", _fmt_1, ratio="KiB/conn"),
    Column("RSS after closing (MiB)", "median_rss_after_mib", _fmt_1),
    Column("time to open them", "median_open_s", _fmt_s),
)


def _idle(protocol: str, h2: bool) -> Scenario:
    return Scenario(
        name=f"scale-idle-{'h2' if h2 else 'h1'}",
        description=f"server RSS with idle keep-alive connections over {protocol}, each after"
        " one GET /, scale_load.py",
        tool=sys.executable,
        load="{python} {here}/scale_load.py idle {url} --server-pid {pid}"
        " --connections {connections} --timeout 120" + (" --h2" if h2 else ""),
        parse=parse_idle,
        probe=probe_h2c if h2 else probe_h1,
        servers=SCALE_H2 if h2 else SCALE_H1,
        connections_knob="BENCH_IDLE_CONNECTIONS",
        unit="connections/s",
        concurrency="idle connections",
        per="connection",
        columns=IDLE_COLUMNS,
        rounds=1,
        warmup=False,
        timed=False,
        extra_time=300,
    )


TTFB_COLUMNS = (
    Column("time to first byte (median)", "median_ttfb_ms", _fmt_ms, ratio="TTFB"),
    Column("total time (median)", "median_total_ms", _fmt_ms),
    Column("MiB/s (median)", "median_rps", _fmt_int, ratio="MiB/s"),
)


def _ttfb(protocol: str, h2: bool) -> Scenario:
    return Scenario(
        name=f"scale-ttfb-{'h2' if h2 else 'h1'}",
        description=f"GET /stream (100 MiB in 64 KiB body messages) over {protocol}, time to"
        " first byte, curl",
        tool="curl",
        load="{python} {here}/scale_load.py ttfb {url} --transfers {connections}"
        f" --size {STREAM_SIZE}" + (" --h2" if h2 else ""),
        parse=parse_ttfb,
        probe=probe_h2c if h2 else probe_h1,
        servers=SCALE_H2 if h2 else SCALE_H1,
        connections_knob="BENCH_TTFB_TRANSFERS",
        path=STREAM_PATH,
        probe_path="/",
        unit="MiB/s",
        latency="ttfb",
        concurrency="transfers, one after another, a connection each",
        per="100 MiB transfer",
        columns=TTFB_COLUMNS,
        timed=False,
        extra_time=300,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="h1",
            description="HTTP/1.1 keep-alive GET, wrk",
            tool="wrk",
            load="wrk -t1 -c{connections} -d{duration}s --latency {url}",
            parse=parse_wrk,
            probe=probe_h1,
            servers=(CABOOSE, UVICORN_H1, GRANIAN_H1, H2CORN_HTTP),
            connections_knob="BENCH_CONNECTIONS",
        ),
        _h2("h2-m10", "GET / (13 bytes), 10 streams/connection", "-m10 -D{duration}"),
        _h2("h2-m100", "GET / (13 bytes), 100 streams/connection", "-m100 -D{duration}"),
        _h2(
            "h2-1mib",
            "GET /1mib (1 MiB body), 10 streams/connection",
            "-m10 -D{duration}",
            path=LARGE_PATH,
            body=LARGE_BODY,
            throughput=True,
        ),
        # Opt-in: 4,000 requests per connection, below the 4,096 streams after which uvicorn's
        # zttp HTTP/2 ends a connection, so every server finishes the run on live connections.
        _h2(
            "h2-m10-4k",
            "GET / (13 bytes), 10 streams/connection, 4,000 requests/connection",
            "-m10 -n{requests}",
            requests_per_connection=4000,
        ),
        _h2(
            "h2-m100-4k",
            "GET / (13 bytes), 100 streams/connection, 4,000 requests/connection",
            "-m100 -n{requests}",
            requests_per_connection=4000,
        ),
        # Opt-in: gRPC on the Echo app, from grpcio and, the same requests, from h2load.
        _grpc("grpc-unary", "Unary, grpcio", UNARY_ARGS, stream=False, h2load=False),
        _grpc(
            "grpc-stream",
            f"ServerStream of {STREAM_MESSAGES:,} messages, grpcio",
            STREAM_ARGS,
            stream=True,
            h2load=False,
        ),
        _ws("ws-1c-32b", "32-byte messages, 1 connection", 32),
        _ws("ws-50c-32b", "32-byte messages, 50 connections", 32),
        _ws("ws-1c-64k", "64 KiB messages, 1 connection", 64 * 1024),
        _ws("ws-50c-64k", "64 KiB messages, 50 connections", 64 * 1024),
        *(_streams(count) for count in (1, 10, 100, SCALE_STREAMS)),
        _idle("HTTP/1.1", h2=False),
        _idle("HTTP/2 (h2c, prior knowledge)", h2=True),
        _ttfb("HTTP/1.1", h2=False),
        _ttfb("HTTP/2 (h2c, prior knowledge)", h2=True),
        _grpc("grpc-unary-h2load", "Unary, h2load", UNARY_ARGS, stream=False, h2load=True),
        _grpc(
            "grpc-stream-h2load",
            f"ServerStream of {STREAM_MESSAGES:,} messages, h2load",
            STREAM_ARGS,
            stream=True,
            h2load=True,
        ),
    )
}
SCALE_SCENARIOS = (
    "scale-m1,scale-m10,scale-m100,scale-m1000,scale-idle-h1,scale-idle-h2,scale-ttfb-h1,"
    "scale-ttfb-h2"
)
DEFAULT_SCENARIOS = (
    "h1,h2-m10,h2-m100,h2-1mib,ws-1c-32b,ws-50c-32b,ws-1c-64k,ws-50c-64k," + SCALE_SCENARIOS
)
# Names BENCH_SCENARIOS may use for a group of scenarios.
SCENARIO_GROUPS = {"default": DEFAULT_SCENARIOS, "scale": SCALE_SCENARIOS}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    duration: int
    rounds: int
    warmup: int
    connections: dict[str, int]  # BENCH_* knob -> value
    pin: bool
    server_cpu: str
    load_cpu: str
    start_timeout: float
    scenarios: tuple[str, ...]
    servers: tuple[str, ...]
    caboose_pure: bool = False
    caboose_base: str | None = None  # a checkout whose caboose runs as "caboose-base"


def usage_error(msg: str) -> NoReturn:
    print(f"bench: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        usage_error(f"{name} must be an integer, got {raw!r}")
    if value < minimum:
        usage_error(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_list(name: str, default: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip() or default
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def load_config() -> Config:
    can_pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    pin_raw = os.environ.get("BENCH_PIN", "").strip().lower()
    pin = can_pin if not pin_raw else pin_raw not in ("0", "no", "false", "off")
    if pin and not can_pin:
        print("bench: BENCH_PIN asked for, but taskset or a second CPU is missing", file=sys.stderr)
        pin = False
    scenarios = tuple(
        name
        for entry in _env_list("BENCH_SCENARIOS", DEFAULT_SCENARIOS)
        for name in SCENARIO_GROUPS.get(entry, entry).split(",")
    )
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        usage_error(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    return Config(
        duration=_env_int("BENCH_DURATION", 5, 1),
        rounds=_env_int("BENCH_ROUNDS", 3, 1),
        warmup=_env_int("BENCH_WARMUP", 1, 0),
        connections={
            "BENCH_CONNECTIONS": _env_int("BENCH_CONNECTIONS", 64, 1),
            "BENCH_H2_CONNECTIONS": _env_int("BENCH_H2_CONNECTIONS", 10, 1),
            "BENCH_GRPC_CALLS": _env_int("BENCH_GRPC_CALLS", 50, 1),
            "BENCH_GRPC_STREAMS": _env_int("BENCH_GRPC_STREAMS", 10, 1),
            "BENCH_WS_ONE": 1,  # ws-1c-*: one connection, by definition
            "ONE": 1,  # scale-m*: streams on one connection, by definition
            "BENCH_IDLE_CONNECTIONS": _env_int("BENCH_IDLE_CONNECTIONS", 10_000, 1),
            "BENCH_TTFB_TRANSFERS": _env_int("BENCH_TTFB_TRANSFERS", 5, 1),
            "BENCH_WS_CONNECTIONS": _env_int("BENCH_WS_CONNECTIONS", 50, 1),
        },
        pin=pin,
        server_cpu=os.environ.get("BENCH_SERVER_CPU", "0"),
        load_cpu=os.environ.get("BENCH_LOAD_CPU", "1"),
        start_timeout=float(_env_int("BENCH_START_TIMEOUT", 10, 1)),
        scenarios=scenarios,
        servers=_env_list("BENCH_SERVERS", ""),
        caboose_pure=os.environ.get("BENCH_CABOOSE_PURE", "") not in ("", "0"),
        caboose_base=_caboose_base(),
    )


def _caboose_base() -> str | None:
    raw = os.environ.get("BENCH_CABOOSE_BASE", "").strip()
    if raw and not (Path(raw) / "caboose" / "__init__.py").is_file():
        usage_error(f"BENCH_CABOOSE_BASE={raw} is not a caboose checkout (no caboose/__init__.py)")
    return str(Path(raw).resolve()) if raw else None


# --------------------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Running:
    server: Server
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    status: str = "starting"  # starting | ok | failed | died
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)  # Scenario.inspect's, once ready

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def fail(self, status: str, error: str) -> None:
        self.status, self.error = status, error
        log(f"{self.server.name}: {status}: {error}")
        tail = self.log_tail()
        if tail:
            log(f"{self.server.name}: last lines of {self.log_path}:\n{tail}")


def start(
    server: Server, scenario: Scenario, cfg: Config, log_path: Path, started: list[Running]
) -> None:
    """Start one server and wait until it answers. Its Running goes into ``started`` before the
    process exists, so an interrupt at any point still finds it there to stop."""
    port = free_port()
    argv = server.argv(port, scenario.app)
    if cfg.pin:
        argv = ["taskset", "-c", cfg.server_cpu, *argv]
    run = Running(server=server, port=port, argv=argv, log_path=log_path)
    started.append(run)
    missing = server.missing()
    if missing:
        run.status = "n/a"
        run.error = (
            f"cannot serve {scenario.name}: {missing} is not installed in the benchmark venv"
        )
        log(f"{server.name}: n/a: {run.error}")
        return
    exe = argv[3] if cfg.pin else argv[0]
    if not Path(exe).exists():
        run.fail("failed", f"{exe} is not installed in the benchmark venv")
        return
    env = dict(os.environ)
    own = dict(server.env)
    paths = [own.pop("PYTHONPATH", None), str(ROOT), env.get("PYTHONPATH")]
    env.update(own)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log(f"{server.name}: starting on {HOST}:{port}: {' '.join(argv)}")
    with open(log_path, "wb") as out:
        try:
            # A new session makes the server the leader of its own process group, so stop() can
            # end it and every worker it forked, and a Ctrl-C in the terminal reaches us, not it.
            run.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            run.fail("failed", f"could not execute: {exc}")
            return
    wait_ready(run, scenario, cfg.start_timeout)
    if run.status != "ok":
        stop(run)  # a server that is not serving must not eat CPU during the others' runs


def wait_ready(run: Running, scenario: Scenario, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "never accepted a connection"
    while time.monotonic() < deadline:
        assert run.proc is not None
        code = run.proc.poll()
        if code is not None:
            run.fail("failed", f"exited with status {code} before answering")
            return
        try:
            problem = scenario.probe(
                run.port,
                max(0.2, min(2.0, deadline - time.monotonic())),
                scenario.probe_path or scenario.path,
                BODY if scenario.probe_path else scenario.body,
            )
        except OSError as exc:
            last = f"probe: {exc.__class__.__name__}: {exc}"
        else:
            if problem is None:
                run.status = "ok"
                log(f"{run.server.name}: ready")
                if scenario.inspect is not None:
                    run.facts = scenario.inspect(run.port)
                    log(f"{run.server.name}: {run.facts}")
                return
            last = f"probe: {problem}"
        time.sleep(0.1)
    run.fail("failed", f"not answering correctly within {timeout:g}s ({last})")


def stop(run: Running) -> None:
    proc = run.proc
    if proc is None:
        return
    pgid = proc.pid  # start_new_session: the server leads its own group, pgid == pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{run.server.name}: did not stop within 5s, killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # Workers that outlived their parent are still in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    run.proc = None


# --------------------------------------------------------------------------- load runs


def load_once(
    run: Running, scenario: Scenario, cfg: Config, duration: int
) -> tuple[Measurement | None, str]:
    url = f"http://{HOST}:{run.port}{scenario.path}"
    assert run.proc is not None
    request_log = RESULTS / f".requests-{os.getpid()}.tsv"  # {log}: h2load's per-request log
    argv = scenario.load_argv(
        url,
        duration,
        cfg.connections[scenario.connections_knob],
        pid=run.proc.pid,
        request_log=request_log,
    )
    if cfg.pin:
        argv = ["taskset", "-c", cfg.load_cpu, *argv]
    # A run bounded by a request count ends when the slowest server has answered them all.
    limit = 300 if scenario.requests_per_connection else duration + scenario.extra_time
    server0, cpu0, t0 = proctree.cpu_seconds(run.proc.pid), _children_cpu(), time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{scenario.tool} did not finish within {limit}s"
    finally:
        latency = _request_log_percentiles(request_log)
    cpu, wall = _children_cpu() - cpu0, time.monotonic() - t0
    server_cpu = proctree.cpu_seconds(run.proc.pid) - server0
    out = done.stdout + done.stderr
    if done.returncode != 0:
        return None, f"{scenario.tool} exited with status {done.returncode}: {out.strip()[-300:]}"
    try:
        m = scenario.parse(done.stdout)
    except ValueError as exc:
        return None, f"{exc}: {out.strip()[-300:]}"
    if m.load_cpu_share is None and wall > 0:  # grpc_load.py measures its own window
        m.load_cpu_share = cpu / wall
    m.server_cpu_s = server_cpu
    m.latency_ms.update(latency)
    m.p99_ms = m.latency_ms.get("p99", m.p99_ms)
    return m, out


def _request_log_percentiles(path: Path) -> dict[str, float]:
    """p50/p90/p99/max in ms from h2load's ``--log-file`` (start time, status, microseconds to
    the end of the response, tab-separated), which h2load's own summary lacks; the file is
    removed. Failed streams (status -1) are left out: they count as errors already."""
    try:
        with path.open() as rows:
            times = [int(f[2]) / 1e3 for f in (r.split("\t") for r in rows) if f[1] != "-1"]
    except (OSError, IndexError, ValueError):
        return {}
    finally:
        path.unlink(missing_ok=True)
    if not times:
        return {}
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": times[-1]}


def _children_cpu() -> float:
    """CPU seconds of the finished child processes: after a load run, the load tool's share of
    its CPU says whether the tool, rather than the server, may have been the limit."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


MAX_ERROR_SHARE = 0.01  # a run with more failed requests than this measures failure, not speed


def invalid_reason(m: Measurement) -> str | None:
    """Why a parsed load run must not count, or None when it may."""
    if not m.requests or m.rps <= 0:
        return f"no successful request ({m.errors} errors)"
    if m.errors > MAX_ERROR_SHARE * m.requests:
        return f"{m.errors} errors for {m.requests} requests"
    if m.lost_connections:
        return (
            f"connections closed by the server mid-run ({m.errors} errors; h2load does not"
            f" reconnect): {m.rps:,.0f} req/s over the run, ~{m.connected_rps or 0:,.0f} connected"
        )
    return None


def _median(runs: list[dict[str, Any]], key: str, sub: str | None = None) -> float | None:
    values = [r[key] if sub is None else r[key].get(sub) for r in runs if r.get(key) is not None]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# A peer whose every run was invalid only because it ended connections mid-run: a limit of the
# peer (uvicorn + zttp ends each HTTP/2 connection after 4,096 streams), reported in the table
# with its rate while connected, and not a failure of the benchmark run unless it is caboose.
CLOSES_CONNECTIONS = "closes connections"


def summarize(runs: list[Running], scenario: Scenario) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        measured = [r for r in run.runs if r.get("rps") is not None]
        good = [r for r in measured if not r.get("invalid")]
        status, error = run.status, run.error
        lost = [r for r in measured if r.get("lost_connections")]
        if status == "ok" and not good:
            reasons = [r.get("invalid") or r.get("error") or "?" for r in run.runs]
            if lost and len(lost) == len(run.runs):
                status = CLOSES_CONNECTIONS
            elif any(r.get("invalid") for r in run.runs):
                status = "invalid"
            else:
                status = "no results"
            error = f"no valid load run: {'; '.join(reasons)[:400]}"
        summary[run.server.name] = {
            "status": status,
            "error": error,
            "median_rps": _median(good, "rps"),
            "median_p99_ms": _median(good, "p99_ms"),
            "median_latency_ms": _median(good, "latency_ms", scenario.latency),
            "latency": scenario.latency,
            "median_mib_per_s": _median(good, "mib_per_s"),
            "median_load_cpu_share": _median(good, "load_cpu_share"),
            # Runs left out because connections ended early: what the server did while connected.
            "median_connected_rps": _median(lost, "connected_rps"),
            "median_server_cpu_us": _median(good, "server_cpu_us"),
            "rounds_ok": len(good),
            "rounds_run": len(run.runs),
            "errors": sum(r.get("errors", 0) for r in good),
        }
        extras = {k for r in good for k in r.get("extra", {})}
        for key in sorted(extras):
            summary[run.server.name][f"median_{key}"] = _median(good, "extra", key)
        for key, value in run.facts.items():
            summary[run.server.name][f"fact_{key}"] = value
    return summary


def _ratio(base: float | None, peer: float | None) -> str:
    return "n/a" if base is None or not peer else f"{base / peer:.2f}x"


# A load tool busy this share of its CPU or more may be what limits the rate, not the server.
LOAD_CPU_SATURATED = 0.90


def rate_columns(scenario: Scenario) -> tuple[Column, ...]:
    """The usual table: the rate, a latency and, for a throughput scenario, body MiB/s."""
    unit = scenario.unit
    columns = [
        Column(f"{unit} (median)", "median_rps", _fmt_int, ratio=unit),
        Column(f"{scenario.latency} latency (median)", "median_latency_ms", _fmt_ms),
    ]
    if scenario.throughput:
        columns.append(Column("body MiB/s (median)", "median_mib_per_s", _fmt_1, ratio="MiB/s"))
    return tuple(columns)


def table(summary: dict[str, dict[str, Any]], scenario: Scenario) -> str:
    columns = [
        *(scenario.columns or rate_columns(scenario)),
        *scenario.fact_columns,
        Column(f"server CPU per {scenario.per}", "median_server_cpu_us", _fmt_cpu, ratio="CPU"),
        Column("load CPU (median)", "median_load_cpu_share", _fmt_share),
    ]
    head = ["server"]
    for column in columns:
        head += [column.head] + ([f"caboose/peer ({column.ratio})"] if column.ratio else [])
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    base = summary.get(BASELINE, {})
    for name, s in summary.items():
        if s["median_rps"] is None:
            status = s["status"]
            if s.get("median_connected_rps"):
                status += f" (~{s['median_connected_rps']:,.0f} while connected)"
            lines.append(f"| {name} | {status} |" + " n/a |" * (len(head) - 2))
            continue
        row = [name]
        for column in columns:
            value = s.get(column.key)
            row.append("n/a" if value is None else column.fmt(value))
            if column.ratio:
                ratio = _ratio(base.get(column.key), value)
                row.append("baseline" if name == BASELINE else ratio)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- environment record


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def environment(scenario: Scenario, cfg: Config) -> dict[str, Any]:
    commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "caboose"])
    base = cfg.caboose_base
    return {
        # Which build "caboose" ran: "caboose 0.1.0, compiled with mypyc (N modules), ...".
        "caboose_build": _command_output([str(VENV_BIN / "caboose"), "--version"]),
        "caboose_base_commit": base and _command_output(["git", "-C", base, "rev-parse", "HEAD"]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "git_commit": commit,
        "caboose_tree_dirty": bool(dirty),
        "load_tool": _command_output([scenario.tool, "--version"]),
        "packages": {
            d: _version(d)
            for d in (
                "caboose",
                "uvicorn",
                "granian",
                "hypercorn",
                "uvloop",
                "httptools",
                "zttp",
                "h2",
                "h2corn",
                "grpcio",
                "grpcio-tools",
                "protobuf",
                "connectrpc",
            )
        },
    }


# --------------------------------------------------------------------------- main loop


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into an exception so the ``finally`` that stops servers
    runs. SIGINT is set explicitly because a shell starting us in the background leaves it
    ignored, and then Python would never raise KeyboardInterrupt."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in watched}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def with_builds(servers: tuple[Server, ...], cfg: Config) -> list[Server]:
    """The scenario's servers, with caboose's other builds right after it when asked for:
    its pure-Python build (BENCH_CABOOSE_PURE) and the pure build of another checkout
    (BENCH_CABOOSE_BASE, e.g. a git worktree of an older commit), which its PYTHONPATH puts
    first, so that both builds and both commits meet the same load in one interleaved run."""
    pure = (("CABOOSE_COMPILED", "0"),)
    out: list[Server] = []
    for server in servers:
        out.append(server)
        if server.name != BASELINE:
            continue
        if cfg.caboose_pure:
            out.append(dataclasses.replace(server, name="caboose-pure", env=pure))
        if cfg.caboose_base:
            base = (*pure, ("PYTHONPATH", cfg.caboose_base))
            out.append(dataclasses.replace(server, name="caboose-base", env=base))
    return out


def run_scenario(scenario: Scenario, cfg: Config, stamp: str) -> tuple[bool, bool]:
    """Returns (every server produced results, interrupted)."""
    servers = [
        s for s in with_builds(scenario.servers, cfg) if not cfg.servers or s.name in cfg.servers
    ]
    if not servers:
        log(f"{scenario.name}: no server left after BENCH_SERVERS={','.join(cfg.servers)}")
        return False, False
    if shutil.which(scenario.tool) is None:
        log(f"{scenario.name}: {scenario.tool} is not installed; skipping the scenario")
        return False, False
    problem = scenario.prepare() if scenario.prepare else None
    if problem:
        log(f"{scenario.name}: preparing failed ({problem}); skipping the scenario")
        return False, False
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    loadavg_start = os.getloadavg()  # other work on the machine shows here and skews figures
    connections = cfg.connections[scenario.connections_knob]
    length = scenario.run_length(cfg.duration, connections)
    rounds = scenario.rounds or cfg.rounds
    log(
        f"{scenario.name}: {scenario.description}; {rounds} round(s) x {length}, "
        f"{connections} {scenario.concurrency}, pinned={cfg.pin}"
    )
    runs: list[Running] = []
    interrupted = False
    try:
        with terminate_as_interrupt():
            for server in servers:
                log_path = logs / f"{scenario.name}-{stamp}-{server.name}.log"
                start(server, scenario, cfg, log_path, runs)
            if cfg.warmup and scenario.warmup:
                for run in runs:
                    if run.status == "ok":
                        warm = scenario.run_length(cfg.warmup, connections)
                        log(f"{run.server.name}: warm-up {warm}")
                        load_once(run, scenario, cfg, cfg.warmup)
            for rnd in range(1, rounds + 1):
                for run in runs:
                    if run.status != "ok":
                        continue
                    if not run.alive:
                        run.fail("died", f"server exited before round {rnd}")
                        continue
                    m, raw = load_once(run, scenario, cfg, cfg.duration)
                    record: dict[str, Any] = {"round": rnd, "raw": raw}
                    if m is None:
                        record["error"] = raw
                        log(f"round {rnd} {run.server.name}: load run failed: {raw}")
                    else:
                        record.update(
                            rps=m.rps,
                            p99_ms=m.p99_ms,
                            requests=m.requests,
                            errors=m.errors,
                            latency_ms=m.latency_ms,
                            mib_per_s=m.mib_per_s,
                            connected_rps=m.connected_rps,
                            lost_connections=m.lost_connections,
                            load_cpu_share=m.load_cpu_share,
                            server_cpu_s=m.server_cpu_s,
                            server_cpu_us=m.server_cpu_us,
                            extra=m.extra,
                        )
                        problem = invalid_reason(m)
                        if problem:
                            record["invalid"] = problem
                        lat = m.latency_ms.get(scenario.latency)
                        note = f", {m.mib_per_s:,.1f} MiB/s" if scenario.throughput else ""
                        if m.load_cpu_share is not None:
                            note += f", load CPU {m.load_cpu_share:.0%}"
                        if m.server_cpu_us is not None:
                            note += f", server CPU {_fmt_cpu(m.server_cpu_us)}/{scenario.per}"
                        note += "".join(f", {k} {v:,.1f}" for k, v in m.extra.items())
                        note += f", {m.errors} errors" if m.errors else ""
                        note += f" -- INVALID: {problem}" if problem else ""
                        log(
                            f"round {rnd} {run.server.name}: {m.rps:,.0f} {scenario.unit}, "
                            f"{scenario.latency} {_fmt_ms(lat)}{note}"
                        )
                    run.runs.append(record)
                    if not run.alive:
                        run.fail("died", f"server exited during round {rnd}")
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = True
        log(f"interrupted ({exc.__class__.__name__} {exc}); stopping servers")
    finally:
        # A second Ctrl-C or SIGTERM must not leave servers behind.
        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in watched}
        try:
            for run in runs:
                stop(run)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    summary = summarize(runs, scenario)
    text = table(summary, scenario)
    print(f"\n### {scenario.name}: {scenario.description}\n")
    pinning = (
        f"server pinned to CPU {cfg.server_cpu}, load tool to CPU {cfg.load_cpu}"
        if cfg.pin
        else "not pinned"
    )
    command = " ".join(
        scenario.load_argv(f"http://{HOST}:PORT{scenario.path}", cfg.duration, connections)
    )
    print(
        f"`{command}`"
        f"; {rounds} round(s) x {length}, {connections} {scenario.concurrency}, "
        f"median over rounds; {pinning}\n"
    )
    print(text)
    for name, info in summary.items():
        if info["error"]:
            print(f"\n- {name}: {info['error']}")
        else:
            if info["rounds_ok"] < info["rounds_run"]:
                skipped = info["rounds_run"] - info["rounds_ok"]
                print(f"\n- {name}: {skipped} of {info['rounds_run']} rounds invalid, left out")
            if info["errors"]:
                print(f"\n- {name}: {info['errors']} socket errors or failed responses counted")
            cpu = info.get("median_load_cpu_share")
            if cpu is not None and cpu >= LOAD_CPU_SATURATED:
                print(
                    f"\n- {name}: the load tool used {cpu:.0%} of its CPU: the rate may be the"
                    " client's limit, not the server's"
                )
    print(flush=True)

    result = {
        "scenario": scenario.name,
        "description": scenario.description,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "loadavg": {"start": loadavg_start, "end": os.getloadavg()},
        "config": {
            "duration_s": cfg.duration,
            "rounds": rounds,
            "warmup_s": cfg.warmup if scenario.warmup else 0,
            "connections": connections,
            "run_length": length,
            "pinned": cfg.pin,
            "server_cpu": cfg.server_cpu if cfg.pin else None,
            "load_cpu": cfg.load_cpu if cfg.pin else None,
            "load_command": scenario.load,
            "path": scenario.path,
            "app": scenario.app,
            "host": HOST,
        },
        "environment": environment(scenario, cfg),
        "servers": {
            run.server.name: {
                **summary[run.server.name],
                "argv": run.argv,
                "log": str(run.log_path.relative_to(ROOT)),
                "runs": run.runs,
            }
            for run in runs
        },
        "table": text,
    }
    path = RESULTS / f"{scenario.name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"raw results: {path.relative_to(ROOT)}")
    ok = all(
        s["median_rps"] is not None
        or s["status"] == "n/a"
        or (s["status"] == CLOSES_CONNECTIONS and name != BASELINE)
        for name, s in summary.items()
    )
    return ok, interrupted


def raise_nofile() -> None:
    """Lift the soft limit on open files to the hard one, for this process and so for every
    server and load tool it starts: scale-idle-* holds 10,000 connections on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    cfg = load_config()
    raise_nofile()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log(f"caboose: {_command_output([str(VENV_BIN / 'caboose'), '--version'])}")
    all_ok = True
    for name in cfg.scenarios:
        ok, interrupted = run_scenario(SCENARIOS[name], cfg, stamp)
        all_ok = all_ok and ok
        if interrupted:
            return 130
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
