"""Micro-benchmark: a whole server request (driver, core, ASGI bridge, app task), no sockets.

The HTTP/1.1 and HTTP/2 drivers get a fake transport and benchmarks/hello.py's app; a batch
of requests is fed to ``data_received`` (one GET for HTTP/1.1, ``BENCH_DRIVER_STREAMS``
HEADERS frames at once for HTTP/2, as h2load -m10 sends them), then the loop turns until
every response has been written. What is left is what caboose spends per request in Python,
without the kernel and the load tool: the figure that the profile-driven cuts of issue #12
are measured with. It also shows the pure-Python and the compiled build side by side:

    CABOOSE_COMPILED=0 python benchmarks/driver_bench.py
    CABOOSE_COMPILED=1 python benchmarks/driver_bench.py
    BENCH_DRIVER_PROFILE=h2 python benchmarks/driver_bench.py   # cProfile, top 25 by tottime

``BENCH_DRIVER_REQUESTS`` requests per run (20,000), ``BENCH_DRIVER_ROUNDS`` runs (5; the
median is reported), ``BENCH_DRIVER_LOOP`` asyncio or uvloop (uvloop when installed).
``BENCH_DRIVER_EAGER=0`` starts the app tasks the 3.11 way (scheduled) on 3.12+ too, to
measure what the eager start (caboose/transport/tasks.py) buys.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hpack

import caboose
from benchmarks.hello import app
from caboose.config import Config
from caboose.transport.http1 import H1Driver
from caboose.transport.http2 import H2Driver
from caboose.transport.state import ServerState

H1_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class Sink:
    """The fake transport: counts what is written, never pushes back."""

    def __init__(self) -> None:
        self.written = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}
        return extra.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _state() -> ServerState:
    return ServerState(config=Config(access_log=False, server_header=True), app=app)


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream_id)
        + payload
    )


def _h2_requests(count: int, batch: int) -> tuple[bytes, list[bytes]]:
    """The client preface, then ``count`` h2load-like GETs in ``batch`` HEADERS frames per
    read, encoded by the ``hpack`` library (from the second on, every field is indexed), with
    a WINDOW_UPDATE per read so the connection window never closes."""
    settings = _frame(0x4, 0, 0, struct.pack(">HI", 0x4, 2**31 - 1))  # INITIAL_WINDOW_SIZE
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + _frame(0x4, 0x1, 0, b"")
    encoder = hpack.Encoder()
    fields = [
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:8000"),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
        (b"accept", b"*/*"),
    ]
    batches: list[bytes] = []
    stream_id = 1
    for _ in range(count // batch):
        frames = []
        for _ in range(batch):
            # END_STREAM | END_HEADERS
            frames.append(_frame(0x1, 0x5, stream_id, encoder.encode(fields)))
            stream_id += 2
        frames.append(_frame(0x8, 0, 0, struct.pack(">I", batch * 100)))  # WINDOW_UPDATE
        batches.append(b"".join(frames))
    return preface, batches


def _no_eager_start(driver: H1Driver | H2Driver) -> None:
    if os.environ.get("BENCH_DRIVER_EAGER", "1") == "0":
        driver.create_task = driver.loop.create_task


async def _run_h1(count: int) -> float:
    driver = H1Driver(_state())
    _no_eager_start(driver)
    sink = Sink()
    driver.connection_made(sink)  # type: ignore[arg-type]
    start = time.perf_counter()
    for _ in range(count):
        before = sink.writes
        driver.data_received(H1_GET)
        await asyncio.sleep(0)  # the loop turns after every read, as it does serving
        while sink.writes == before:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    driver.connection_lost(None)
    return elapsed


async def _run_h2(preface: bytes, batches: list[bytes]) -> float:
    driver = H2Driver(_state())
    _no_eager_start(driver)
    sink = Sink()
    driver.connection_made(sink)  # type: ignore[arg-type]
    driver.data_received(preface)
    for _ in range(3):
        await asyncio.sleep(0)
    start = time.perf_counter()
    for frames in batches:
        driver.data_received(frames)
        await asyncio.sleep(0)  # the loop turns after every read, as it does serving
        while driver.streams:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    driver.connection_lost(None)
    return elapsed


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    wanted = os.environ.get("BENCH_DRIVER_LOOP", "uvloop")
    if wanted == "uvloop":
        try:
            import uvloop

            return uvloop.new_event_loop  # type: ignore[no-any-return]
        except ImportError:
            pass
    return asyncio.new_event_loop


def _measure(run: Callable[[], Any], rounds: int) -> list[float]:
    factory = _loop_factory()
    times = []
    for _ in range(rounds):
        gc.collect()
        loop = factory()
        try:
            times.append(loop.run_until_complete(run()))
        finally:
            loop.close()
    return times


def main() -> None:
    count = int(os.environ.get("BENCH_DRIVER_REQUESTS", "20000"))
    rounds = int(os.environ.get("BENCH_DRIVER_ROUNDS", "5"))
    batch = int(os.environ.get("BENCH_DRIVER_STREAMS", "10"))
    profile = os.environ.get("BENCH_DRIVER_PROFILE", "")
    h2_bytes = _h2_requests(count, batch)
    runs: dict[str, Callable[[], Any]] = {
        "h1": lambda: _run_h1(count),
        "h2": lambda: _run_h2(*h2_bytes),
    }
    eager = "off" if os.environ.get("BENCH_DRIVER_EAGER", "1") == "0" else "as on 3.12+"
    print(f"caboose {caboose.build.describe()}, Python {sys.version.split()[0]}, eager {eager}")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        _measure(runs[profile], 1)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    print("| protocol | µs/request (median) | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, run in runs.items():
        _measure(run, 1)  # warm-up
        micros = [t / count * 1e6 for t in _measure(run, rounds)]
        print(
            f"| {name} | {statistics.median(micros):.2f} | {min(micros):.2f} | {max(micros):.2f} |"
        )


if __name__ == "__main__":
    main()
