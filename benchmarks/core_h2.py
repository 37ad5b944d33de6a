"""Micro-benchmark of the sans-I/O HTTP/2 core: one server-side request cycle, in µs.

HEADERS in (an h2load-like GET, all fields indexed after the first request), then
``send_response(200)`` + a 13-byte DATA with END_STREAM out, then ``data_to_send()``;
averaged over many streams on one connection. Run: ``python benchmarks/core_h2.py``.
"""

from __future__ import annotations

import sys
import time

from caboose.core.events import RequestReceived
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.hpack import Encoder

REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
    (b"accept", b"*/*"),
]
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
BODY = b"Hello, world!"


def handshake() -> H2Connection:
    server = H2Connection(client_side=False)
    server.initiate()
    preface = bytearray(fr.PREFACE)
    fr.write_settings(preface, [(0x4, 65_535)])
    fr.write_settings_ack(preface)
    server.receive_data(bytes(preface))
    server.data_to_send()
    return server


def requests(count: int) -> list[bytes]:
    encoder = Encoder()
    out = []
    for index in range(count):
        frame = bytearray()
        fr.write_headers(frame, 2 * index + 1, encoder.encode(REQUEST), end_stream=True)
        out.append(bytes(frame))
    return out


def credit(count: int) -> bytes:
    # The client credits the connection window for every DATA frame it got (13 bytes each).
    frame = bytearray()
    fr.write_window_update(frame, 0, 13 * count)
    return bytes(frame)


def run(count: int) -> float:
    server = handshake()
    frames = requests(count)
    refill = credit(1000)
    receive = server.receive_data
    send_response = server.send_response
    send_data = server.send_data
    drain = server.data_to_send
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        for event in receive(frame):
            if isinstance(event, RequestReceived):
                stream_id = 2 * index + 1
                send_response(stream_id, 200, RESPONSE)
                send_data(stream_id, BODY, end_stream=True)
        drain()
        if index % 1000 == 999:
            receive(refill)
            server.flood.refill()
    elapsed = time.perf_counter() - start
    return elapsed / count * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    best = min(run(count) for _ in range(5))
    print(f"server request cycle: {best:.2f} µs per request ({count} streams, best of 5)")


if __name__ == "__main__":
    main()
