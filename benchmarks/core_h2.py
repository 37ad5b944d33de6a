"""Micro-benchmark: one server-side HTTP/2 request cycle, our core against the ``h2`` library.

Both servers get the same bytes: the client preface + SETTINGS (+ ACK of the server's
SETTINGS), then one HEADERS frame per stream carrying an h2load-like GET. The request blocks
are encoded once, by one HPACK encoder, so from the second stream on every field is indexed,
exactly as on a real h2load connection. A cycle is::

    ours:  receive_data(frame) -> RequestReceived -> send_head(200, headers)
           -> send_data(b"Hello, world!", end_stream=True) -> data_to_send()
    h2:    receive_data(frame) -> RequestReceived -> send_headers(:status 200 + headers)
           -> send_data(b"Hello, world!", end_stream=True) -> data_to_send()

averaged over many streams on one connection. Every 1,000 streams both get the same client
WINDOW_UPDATE crediting the connection window for the DATA they sent, so neither stalls.
Before timing, each implementation's first two cycles are parsed and HPACK-decoded (HEADERS
:status 200 + DATA with END_STREAM); after each timed run the response count and the last
cycle's frames are checked, so a broken path cannot be timed by accident.

Rounds alternate the two implementations (ours first on even rounds, h2 first on odd ones)
and the table reports the median µs per request; below it, the median of the per-round
ratios (each round times both back to back, so it is the steadier ratio on a machine whose
speed drifts) and the best-vs-best ratio. One extra, instrumented run per
implementation splits the cycle into receive and send (+ drain); it carries the timer's own
overhead, so it is only a breakdown, not the headline number.

    python benchmarks/core_h2.py            # or: make bench-core
    BENCH_CORE_STREAMS=5000 BENCH_CORE_ROUNDS=5 BENCH_CORE_CPU=1 python benchmarks/core_h2.py

``BENCH_CORE_STREAMS`` streams per run (5,000), ``BENCH_CORE_ROUNDS`` rounds (5),
``BENCH_CORE_CPU`` pins the process to one CPU (like ``taskset -c``; unset: no pinning).
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import h2
import h2.config
import h2.connection
import h2.events

from caboose.core.events import ConnectionTerminated, RequestReceived
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.hpack import Decoder, Encoder

REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
    (b"accept", b"*/*"),
]
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
H2_RESPONSE = [(b":status", b"200"), *RESPONSE]
BODY = b"Hello, world!"
REFILL_EVERY = 1000
TARGET_RATIO = 8  # ours must cost at most 1/8 of h2's cycle

# (elapsed seconds, responses sent, output of the last cycle)
RunResult = tuple[float, int, bytes]
# (receive seconds, send + drain seconds) over a run
Split = tuple[float, float]


# -- the client's bytes, shared by both servers ------------------------------------------------


def preface() -> bytes:
    out = bytearray(fr.PREFACE)
    fr.write_settings(out, [(0x4, 65_535)])  # SETTINGS_INITIAL_WINDOW_SIZE
    fr.write_settings_ack(out)  # acknowledges the SETTINGS the server sent first
    return bytes(out)


def requests(count: int) -> list[bytes]:
    """One HEADERS frame per stream, encoded in order by one encoder (h2load's shape)."""
    encoder = Encoder()
    out = []
    for index in range(count):
        frame = bytearray()
        fr.write_headers(frame, 2 * index + 1, encoder.encode(REQUEST), end_stream=True)
        out.append(bytes(frame))
    return out


def credit(count: int) -> bytes:
    """The client credits the connection window for ``count`` DATA frames of 13 bytes."""
    frame = bytearray()
    fr.write_window_update(frame, 0, len(BODY) * count)
    return bytes(frame)


PREFACE = preface()
REFILL = credit(REFILL_EVERY)


# -- our core ----------------------------------------------------------------------------------


def ours_server() -> H2Connection:
    server = H2Connection(client_side=False)
    server.initiate()
    events = server.receive_data(PREFACE)
    if any(isinstance(event, ConnectionTerminated) for event in events):
        raise SystemExit(f"ours: handshake failed: {events}")
    server.data_to_send()
    return server


def ours_run(frames: list[bytes]) -> RunResult:
    server = ours_server()
    receive = server.receive_data
    send_head = server.send_head
    send_data = server.send_data
    drain = server.data_to_send
    served = 0
    out = b""
    gc.collect()
    start = time.perf_counter()
    for index, frame in enumerate(frames, 1):
        for event in receive(frame):
            if isinstance(event, RequestReceived):
                stream_id = event.stream_id
                send_head(stream_id, 200, RESPONSE)
                send_data(stream_id, BODY, end_stream=True)
                served += 1
        out = drain()
        if index % REFILL_EVERY == 0:
            receive(REFILL)
            server.flood.refill()  # the driver's once-a-second timer, in real life
    elapsed = time.perf_counter() - start
    return elapsed, served, out


def ours_split(frames: list[bytes]) -> Split:
    server = ours_server()
    receive = server.receive_data
    send_head = server.send_head
    send_data = server.send_data
    drain = server.data_to_send
    clock = time.perf_counter
    t_receive = t_send = 0.0
    gc.collect()
    for index, frame in enumerate(frames, 1):
        t0 = clock()
        events = receive(frame)
        if index % REFILL_EVERY == 0:
            receive(REFILL)
            server.flood.refill()
        t1 = clock()
        for event in events:
            if isinstance(event, RequestReceived):
                stream_id = event.stream_id
                send_head(stream_id, 200, RESPONSE)
                send_data(stream_id, BODY, end_stream=True)
        drain()
        t2 = clock()
        t_receive += t1 - t0
        t_send += t2 - t1
    return t_receive, t_send


# -- the h2 library ----------------------------------------------------------------------------


def h2_server() -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server = h2.connection.H2Connection(config=config)
    server.initiate_connection()
    server.receive_data(PREFACE)
    server.data_to_send()
    return server


def h2_run(frames: list[bytes]) -> RunResult:
    server = h2_server()
    receive = server.receive_data
    send_headers = server.send_headers
    send_data = server.send_data
    drain = server.data_to_send
    request_received = h2.events.RequestReceived
    served = 0
    out = b""
    gc.collect()
    start = time.perf_counter()
    for index, frame in enumerate(frames, 1):
        for event in receive(frame):
            if isinstance(event, request_received):
                stream_id = event.stream_id
                send_headers(stream_id, H2_RESPONSE)
                send_data(stream_id, BODY, end_stream=True)
                served += 1
        out = drain()
        if index % REFILL_EVERY == 0:
            receive(REFILL)
    elapsed = time.perf_counter() - start
    return elapsed, served, out


def h2_split(frames: list[bytes]) -> Split:
    server = h2_server()
    receive = server.receive_data
    send_headers = server.send_headers
    send_data = server.send_data
    drain = server.data_to_send
    request_received = h2.events.RequestReceived
    clock = time.perf_counter
    t_receive = t_send = 0.0
    gc.collect()
    for index, frame in enumerate(frames, 1):
        t0 = clock()
        events = receive(frame)
        if index % REFILL_EVERY == 0:
            receive(REFILL)
        t1 = clock()
        for event in events:
            if isinstance(event, request_received):
                stream_id = event.stream_id
                send_headers(stream_id, H2_RESPONSE)
                send_data(stream_id, BODY, end_stream=True)
        drain()
        t2 = clock()
        t_receive += t1 - t0
        t_send += t2 - t1
    return t_receive, t_send


# -- correctness -------------------------------------------------------------------------------


def check_cycle(name: str, output: bytes, stream_id: int, decoder: Decoder | None) -> None:
    """``output`` must be HEADERS (END_HEADERS) + DATA (BODY, END_STREAM) on ``stream_id``.

    With a decoder (kept across cycles, like the client's), the block must decode to
    :status 200 + content-type + content-length.
    """
    parsed = fr.FrameReader().receive(output)
    shape = [(kind, flags, sid, bytes(payload)) for kind, flags, sid, payload in parsed]
    ok = (
        len(shape) == 2
        and shape[0][0] == fr.FrameType.HEADERS
        and shape[0][1] & fr.FLAG_END_HEADERS
        and not shape[0][1] & fr.FLAG_END_STREAM
        and shape[0][2] == stream_id
        and shape[1][:3] == (fr.FrameType.DATA, fr.FLAG_END_STREAM, stream_id)
        and shape[1][3] == BODY
    )
    if not ok:
        raise SystemExit(f"{name}: stream {stream_id}: unexpected response frames {shape}")
    if decoder is not None:
        fields = decoder.decode(shape[0][3])
        if fields != H2_RESPONSE:
            raise SystemExit(f"{name}: stream {stream_id}: unexpected response fields {fields}")


def first_cycles(name: str, frames: list[bytes]) -> list[bytes]:
    """The server's output for streams 1 and 3, one ``data_to_send()`` per cycle."""
    outs = []
    if name == "ours":
        ours = ours_server()
        for frame in frames[:2]:
            for event in ours.receive_data(frame):
                if isinstance(event, RequestReceived):
                    ours.send_head(event.stream_id, 200, RESPONSE)
                    ours.send_data(event.stream_id, BODY, end_stream=True)
            outs.append(ours.data_to_send())
    else:
        theirs = h2_server()
        for frame in frames[:2]:
            for h2_event in theirs.receive_data(frame):
                if isinstance(h2_event, h2.events.RequestReceived):
                    stream_id = h2_event.stream_id
                    assert stream_id is not None
                    theirs.send_headers(stream_id, H2_RESPONSE)
                    theirs.send_data(stream_id, BODY, end_stream=True)
            outs.append(theirs.data_to_send())
    return outs


def verify(name: str, frames: list[bytes]) -> None:
    """Stream 1 (literal request block) and stream 3 (all indexed) get the full response.

    One decoder reads both responses in order, as the client would, so a response block
    that refers to the server's dynamic table is decoded against the right entries.
    """
    decoder = Decoder()
    for stream_id, out in zip((1, 3), first_cycles(name, frames), strict=True):
        check_cycle(name, out, stream_id, decoder)


def check_run(name: str, result: RunResult, count: int) -> None:
    _, served, out = result
    if served != count:
        raise SystemExit(f"{name}: {served} responses for {count} requests")
    check_cycle(name, out, 2 * count - 1, None)


# -- driver ------------------------------------------------------------------------------------


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def main() -> None:
    count = env_int("BENCH_CORE_STREAMS", 5_000)
    rounds = env_int("BENCH_CORE_ROUNDS", 5)
    cpu = os.environ.get("BENCH_CORE_CPU", "").strip()
    if count < 1 or rounds < 1:
        raise SystemExit("BENCH_CORE_STREAMS and BENCH_CORE_ROUNDS must be >= 1")
    if cpu:
        os.sched_setaffinity(0, {int(cpu)})
    pinned = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    frames = requests(count)
    probe = requests(2)  # == frames[:2] when count >= 2: one encoder, same order
    impls: dict[str, Callable[[list[bytes]], RunResult]] = {"ours": ours_run, "h2": h2_run}
    for name, run in impls.items():
        verify(name, probe)
        check_run(name, run(frames[: min(count, 1_000)]), min(count, 1_000))  # warm-up

    samples: dict[str, list[float]] = {name: [] for name in impls}
    for round_no in range(rounds):
        order = list(impls) if round_no % 2 == 0 else list(reversed(impls))
        for name in order:
            result = impls[name](frames)
            check_run(name, result, count)
            samples[name].append(result[0] / count * 1e6)

    splits = {"ours": ours_split(frames), "h2": h2_split(frames)}

    ours = statistics.median(samples["ours"])
    theirs = statistics.median(samples["h2"])
    print(
        f"Server request cycle, {count} streams x {rounds} rounds (interleaved), "
        f"Python {platform.python_version()}, h2 {h2.__version__}, "
        f"CPUs {','.join(map(str, pinned)) or '?'}"
    )
    print()
    print("| implementation | µs/request (median) | requests/s equivalent | ratio (ours/h2) |")
    print("|---|---:|---:|---:|")
    for name, median in (("caboose core", ours), (f"h2 {h2.__version__}", theirs)):
        print(f"| {name} | {median:.2f} | {1e6 / median:,.0f} | {median / theirs:.3f} |")
    print()
    for name in impls:
        values = samples[name]
        t_receive, t_send = splits[name]
        print(
            f"{name}: rounds {', '.join(f'{v:.2f}' for v in values)} µs; "
            f"instrumented split: receive {t_receive / count * 1e6:.2f} µs, "
            f"send + drain {t_send / count * 1e6:.2f} µs"
        )
    # Each round times ours and h2 back to back, so a per-round ratio cancels slow drifts of
    # the machine's speed that the two medians, taken over different rounds, may not.
    paired = statistics.median(o / t for o, t in zip(samples["ours"], samples["h2"], strict=True))
    best = min(samples["ours"]) / min(samples["h2"])
    print(f"ratio ours/h2: median of per-round ratios {paired:.3f}, best vs best {best:.3f}")
    print()
    met = ours * TARGET_RATIO <= theirs
    print(
        f"Target ours <= 1/{TARGET_RATIO} of h2's cost: {'MET' if met else 'NOT MET'} "
        f"(ours = 1/{theirs / ours:.2f} of h2; needs <= {theirs / TARGET_RATIO:.2f} µs)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
