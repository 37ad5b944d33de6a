"""WebSocket echo load generator for bench.py's ws-* scenarios. Standard library only.

    python benchmarks/ws_load.py URL --connections 50 --size 32 --duration 5 --inflight 8
    python benchmarks/ws_load.py probe URL --timeout 2

URL is ``http://127.0.0.1:PORT/ws`` (the form bench.py hands every tool); the socket is an
HTTP/1.1 ``Upgrade: websocket`` to that path. Each connection keeps ``--inflight`` binary
messages of ``--size`` bytes in flight and sends one more for every echo that comes back, so
the rate is set by the server, not by round trips.

It is built to cost the server's share, not its own: every message is the same masked frame,
built once (RFC 6455 §5.3 asks a client for a fresh mask per frame so that a proxy cannot be
poisoned by chosen bytes; a benchmark on loopback has no proxy), and echoes are counted by
their bytes (each is exactly one unmasked frame of known length) instead of being parsed.
Latency is the time from a message's send to its echo (echoes come back in order).

It prints ONE JSON line: ``rate`` (echoed messages/s over the window), ``messages``,
``served`` (every echo, the ramp-up before the window included: what the server's CPU time
over the whole run is divided by),
``errors`` (connections that failed or closed early), ``latency_ms`` (p50/p90/p99/max) and
``load_cpu_share`` (this process's CPU seconds per second of the window).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import resource
import struct
import sys
import time
import urllib.parse

try:
    import uvloop
except ImportError:  # the benchmark venv has it; plain asyncio works too
    uvloop = None


def client_frame(payload: bytes) -> bytes:
    """A masked binary frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x82, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, length)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def server_frame_length(size: int) -> int:
    """Bytes of the server's unmasked binary frame carrying ``size`` bytes."""
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


def handshake(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Echoer(asyncio.Protocol):
    def __init__(self, request: bytes, frame: bytes, echo_length: int, inflight: int) -> None:
        self.request, self.frame = request, frame
        self.echo_length, self.inflight = echo_length, inflight
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = False
        self.pending = 0  # bytes of the echo under way
        self.sent: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.echoed = 0
        self.served = 0  # every echo, the ramp-up before the window included
        self.measuring = False
        self.failed = False
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail()
                return
            self.open = True
            now = time.perf_counter()
            self.transport.write(self.frame * self.inflight)
            self.sent.extend([now] * self.inflight)
        self.pending += len(data)
        count, self.pending = divmod(self.pending, self.echo_length)
        if not count:
            return
        now = time.perf_counter()
        self.served += count
        for _ in range(count):
            started = self.sent.popleft()
            if self.measuring:
                self.echoed += 1
                self.latencies.append(now - started)
        self.transport.write(self.frame * count)
        self.sent.extend([now] * count)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.failed = self.failed or self.measuring
            self.done.set_result(None)

    def _fail(self) -> None:
        self.failed = True
        if self.transport is not None:
            self.transport.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1000  # noqa: E731
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": values[-1] * 1000}


async def load(url: str, connections: int, size: int, duration: float, inflight: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    frame = client_frame(bytes(range(256)) * (size // 256) + bytes(size % 256))
    loop = asyncio.get_running_loop()
    echoers: list[Echoer] = []
    for _ in range(connections):
        request = handshake(host, port, path)
        _, echoer = await loop.create_connection(
            lambda r=request: Echoer(r, frame, server_frame_length(size), inflight), host, port
        )
        echoers.append(echoer)
    await asyncio.sleep(0.3)  # every socket open and echoing
    cpu0 = _cpu()
    start = time.perf_counter()
    for echoer in echoers:
        echoer.measuring = True
    await asyncio.sleep(duration)
    for echoer in echoers:
        echoer.measuring = False
    wall = time.perf_counter() - start
    cpu = _cpu() - cpu0
    for echoer in echoers:
        if echoer.transport is not None:
            echoer.transport.close()
    messages = sum(e.echoed for e in echoers)
    latencies = [value for e in echoers for value in e.latencies]
    return {
        "rate": messages / wall,
        "messages": messages,
        "served": sum(e.served for e in echoers),
        "errors": sum(1 for e in echoers if e.failed or not e.open),
        "latency_ms": percentiles(latencies),
        "load_cpu_share": cpu / wall,
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def probe(url: str, timeout: float) -> str | None:
    """One handshake and one echoed message; None when it came back right."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(handshake(host, port, parts.path or "/"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            return f"unexpected handshake answer {head[:60]!r}"
        payload = b"probe"
        writer.write(client_frame(payload))
        echo = await asyncio.wait_for(reader.readexactly(server_frame_length(5)), timeout)
        return None if echo == b"\x82\x05" + payload else f"unexpected echo {echo!r}"
    finally:
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode_or_url")
    parser.add_argument("url", nargs="?")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.mode_or_url == "probe":
        try:
            error = asyncio.run(probe(args.url, args.timeout))
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            error = repr(exc)
        print(error or "ok")
        return 0 if error is None else 1
    result = asyncio.run(
        load(args.mode_or_url, args.connections, args.size, args.duration, args.inflight)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
