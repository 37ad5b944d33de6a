"""Load for bench.py's scale scenarios. Standard library only (uvloop when installed).

    python benchmarks/scale_load.py idle URL --server-pid PID --connections 10000 [--h2]
    python benchmarks/scale_load.py ttfb URL --transfers 3 --size 104857600 [--h2]

``idle`` measures what idle keep-alive connections cost a server: it reads the server's RSS
(its process tree, from /proc), opens ``--connections`` connections to URL, at most
``--concurrency`` being set up at a time and all within ``--timeout`` seconds (those not
answered by then count as failed), makes one GET on each (HTTP/1.1; or, with ``--h2``,
the HTTP/2 preface, SETTINGS both ways and one GET as stream 1) and keeps them all open and
idle. Once every one is open it waits ``--settle`` seconds, reads the server's RSS again and
closes them (with RST, so that 10,000 client sockets per run leave no TIME_WAIT behind), then
reads the RSS once more a second later. It raises its own RLIMIT_NOFILE to the hard limit, and
fails when that cannot hold the connections. A PING from the server is answered, so a server
that checks liveness keeps the connection.

``ttfb`` measures a long streamed response: it runs ``curl`` ``--transfers`` times in turn
(``--http2-prior-knowledge`` with ``--h2``) and reports the median time to the first response
byte and to the last, both from the moment curl has connected and is about to send the request,
and the median MiB/s over the latter. A transfer with another status or size than
``--size`` bytes counts as an error.

Each prints ONE JSON line; the fields are those built in ``idle()`` and ``ttfb()`` below.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.parse

import proctree  # beside this file

try:
    import uvloop
except ImportError:  # the benchmark venv has it; plain asyncio works too
    uvloop = None

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BODY = b"Hello, world!"  # what benchmarks/hello.py answers on /
SETTINGS, PING, GOAWAY, HEADERS, DATA = 0x4, 0x6, 0x7, 0x1, 0x0
ACK = END_STREAM = 0x1
MiB = 1 << 20


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def h2_request(host: str, port: int, path: str) -> bytes:
    """Preface, empty SETTINGS and GET ``path`` as stream 1. The header block uses the static
    table and literals without indexing only, so it needs no HPACK encoder."""
    authority, raw_path = f"{host}:{port}".encode(), path.encode()
    block = b"\x82\x86" + (b"\x84" if path == "/" else b"\x04" + bytes([len(raw_path)]) + raw_path)
    block += b"\x01" + bytes([len(authority)]) + authority  # :authority, not indexed
    return PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0x5, 1, block)


class Idle(asyncio.Protocol):
    """One connection: one request, then idle until closed."""

    def __init__(self, request: bytes, h2: bool) -> None:
        self.request, self.h2 = request, h2
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.body = bytearray()
        self.answered = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.h2:
            self._frames()
        elif not self.answered.done() and self.buf.endswith(BODY) and b"\r\n\r\n" in self.buf:
            ok = self.buf.startswith(b"HTTP/1.1 200")
            self._answer(None if ok else f"unexpected answer {bytes(self.buf[:40])!r}")
            self.buf.clear()

    def _frames(self) -> None:
        while len(self.buf) >= 9:  # bounded by the buffer, which each pass shortens
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9 : 9 + length])
            del self.buf[: 9 + length]
            assert self.transport is not None
            if kind == SETTINGS and not flags & ACK:
                self.transport.write(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.transport.write(frame(PING, ACK, 0, payload))
            elif kind == GOAWAY:
                self._answer("GOAWAY")
            elif kind == DATA and stream == 1:
                self.body += payload
            if stream == 1 and kind in (HEADERS, DATA) and flags & END_STREAM:
                ok = self.body == BODY
                self._answer(None if ok else f"unexpected body {bytes(self.body[:40])!r}")

    def _answer(self, error: str | None) -> None:
        if not self.answered.done():
            self.answered.set_result(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._answer("connection closed before the answer")


async def open_one(
    url: urllib.parse.SplitResult, h2: bool, gate: asyncio.Semaphore, deadline: float
) -> Idle | str:
    """One connection and its answer, or why not by ``deadline`` (the loop's clock)."""
    host, port, path = url.hostname or "127.0.0.1", url.port or 80, url.path or "/"
    if h2:
        request = h2_request(host, port, path)
    else:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    conn = None
    async with gate:
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(lambda: Idle(request, h2), host, port)
                error = await asyncio.shield(conn.answered)
        except TimeoutError:
            error = "no answer before the deadline" if conn else "no connection before the deadline"
        except OSError as exc:
            error = f"{exc.__class__.__name__}: {exc}"
    if error is None and conn is not None:
        return conn
    if conn is not None:
        reset(conn)
    return error


def reset(conn: Idle) -> None:
    """Close with RST (SO_LINGER 0): no TIME_WAIT left on the client's ports."""
    if conn.transport is None or conn.closed:
        return
    sock = conn.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.transport.close()


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")


async def idle(args: argparse.Namespace) -> dict[str, object]:
    url = urllib.parse.urlsplit(args.url)
    pid = args.server_pid
    rss_idle = proctree.rss_bytes(pid)
    cpu0, start = _cpu(), time.perf_counter()
    gate = asyncio.Semaphore(args.concurrency)
    deadline = asyncio.get_running_loop().time() + args.timeout
    results = await asyncio.gather(
        *(open_one(url, args.h2, gate, deadline) for _ in range(args.connections))
    )
    open_s = time.perf_counter() - start
    conns = [r for r in results if isinstance(r, Idle)]
    failures = [r for r in results if isinstance(r, str)]
    await asyncio.sleep(args.settle)
    rss_open = proctree.rss_bytes(pid)
    closed = sum(1 for c in conns if c.closed)  # by the server, while idle
    load_cpu = _cpu() - cpu0
    for conn in conns:
        reset(conn)
    await asyncio.sleep(1.0)
    return {
        "connections": args.connections,
        "opened": len(conns),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "closed_by_server": closed,
        "open_s": open_s,
        "rss_idle": rss_idle,
        "rss_open": rss_open,
        "rss_after_close": proctree.rss_bytes(pid),
        "load_cpu_share": load_cpu / (time.perf_counter() - start),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Times are taken from curl's pretransfer point (connected, request about to go out), so that
# connect time and the client's own start, which a busy machine stretches, stay out of them.
CURL_FORMAT = (
    "%{http_code} %{size_download} %{time_pretransfer} %{time_starttransfer} %{time_total}"
)


def ttfb(args: argparse.Namespace) -> dict[str, object]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", CURL_FORMAT, "--max-time", str(args.timeout)]
    if args.h2:
        argv.append("--http2-prior-knowledge")
    firsts, totals, errors = [], [], []
    for _ in range(args.transfers):
        done = subprocess.run(
            [*argv, args.url], capture_output=True, text=True, timeout=args.timeout + 10
        )
        fields = done.stdout.split()
        if done.returncode != 0 or len(fields) != 5:
            errors.append(f"curl exit {done.returncode}: {done.stderr.strip()[-200:]}")
            continue
        status, size = fields[0], int(fields[1])
        if status != "200" or size != args.size:
            errors.append(f"status {status}, {size:,} bytes")
            continue
        sent, first, last = (float(f) * 1e3 for f in fields[2:])
        firsts.append(first - sent)
        totals.append(last - sent)
    total = statistics.median(totals) if totals else None
    return {
        "transfers": len(totals),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "ttfb_ms": statistics.median(firsts) if firsts else None,
        "total_ms": total,
        "mib_per_s": args.size / MiB / (total / 1e3) if total else None,
        "ttfb_all_ms": firsts,
        "total_all_ms": totals,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("idle", "ttfb"))
    parser.add_argument("url")
    parser.add_argument("--h2", action="store_true", help="HTTP/2 with prior knowledge")
    parser.add_argument("--server-pid", type=int, help="idle: the server whose RSS is read")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="idle: set up at once")
    parser.add_argument("--settle", type=float, default=2.0, help="idle: seconds held open")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds for all idle connections, or a transfer",
    )
    parser.add_argument("--transfers", type=int, default=3)
    parser.add_argument("--size", type=int, default=100 * MiB, help="ttfb: expected body bytes")
    args = parser.parse_args()
    if args.mode == "ttfb":
        print(json.dumps(ttfb(args)))
        return 0
    if args.server_pid is None:
        parser.error("idle needs --server-pid")
    raise_nofile(args.connections + 100)
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(idle(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
