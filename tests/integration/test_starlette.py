"""Starlette's own StreamingResponse stops at its next send once the client leaves, on both
protocols: caboose advertises ASGI 2.4, so send() then raises an OSError subclass
(ClientDisconnected), which Starlette turns into the end of the stream."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.h2peer import CANCEL, H2Peer
from tests.serving import running

TICK = 0.01  # the endless stream yields a chunk this often
STOP_WITHIN = 0.1  # ... and must stop this soon after the client left


class Ticks:
    """When the endless generator last produced a chunk."""

    def __init__(self) -> None:
        self.times: list[float] = []


def endless_app(ticks: Ticks) -> Starlette:
    async def forever() -> AsyncIterator[bytes]:
        while True:
            ticks.times.append(time.monotonic())
            yield b"tick\n"
            await asyncio.sleep(TICK)

    async def endless(request: object) -> StreamingResponse:
        return StreamingResponse(forever(), media_type="text/plain")

    return Starlette(routes=[Route("/endless", endless)])


def assert_stopped_soon_after(ticks: Ticks, left_at: float) -> None:
    time.sleep(0.5)  # had it gone on, it would have produced some 50 more chunks by now
    assert ticks.times, "the stream never started"
    assert ticks.times[-1] - left_at < STOP_WITHIN, ticks.times[-1] - left_at


def test_http1_client_closing_stops_the_stream() -> None:
    ticks = Ticks()
    with running(endless_app(ticks)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while data.count(b"tick") < 3:
                data += sock.recv(65536)
        left_at = time.monotonic()
        assert_stopped_soon_after(ticks, left_at)


def test_http2_reset_stops_the_stream() -> None:
    ticks = Ticks()
    with running(endless_app(ticks)) as server, H2Peer(server.port) as peer:
        stream_id = peer.request("/endless")
        log = peer.stream(stream_id)
        assert peer.pump(lambda: log.data.count(b"tick") >= 3)
        peer.reset(stream_id, CANCEL)
        left_at = time.monotonic()
        assert_stopped_soon_after(ticks, left_at)
