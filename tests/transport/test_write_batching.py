"""How the HTTP/2 driver batches a streamed body into writes (transport/http2.py _EAGER_FLUSH).

An app that streams without suspending gets its messages gathered into writes of about a
MiB: one write per 64 KiB message made the reader's wake-ups double the kernel time of a
100 MiB stream. It must still meet the transport's push-back long before the whole body is
queued, so no write waits for more than that MiB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from caboose.config import Config
from caboose.transport.http2 import _EAGER_FLUSH, H2Driver
from caboose.transport.state import ServerState
from tests.transport.test_backpressure import FakeTransport

CHUNK = 64 * 1024
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]


class CountingTransport(FakeTransport):
    """Counts the writes, and the body bytes queued in the driver's core at each of them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1
        super().write(data)

    def writelines(self, buffers: Iterable[Any]) -> None:
        self.writes += 1
        for buffer in buffers:
            super().write(buffer)


def _stream(messages: int) -> tuple[int, int]:
    """(writes of the body, bytes of the body written) once an app that never suspends has
    sent ``messages`` 64 KiB messages to a client with huge windows."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.increment_flow_control_window(2**31 - 1 - 65535)
    client.send_headers(1, REQUEST, end_stream=True)
    payload = b"x" * CHUNK

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(messages):
            await send({"type": "http.response.body", "body": payload, "more_body": True})
        await send({"type": "http.response.body"})

    async def scenario() -> tuple[int, int]:
        driver = H2Driver(ServerState(config=Config(), app=app))
        transport = CountingTransport()
        driver.connection_made(transport)  # type: ignore[arg-type]
        driver.data_received(client.data_to_send())
        for _ in range(20):
            await asyncio.sleep(0)
        before = transport.writes
        written = len(transport.written)
        driver.connection_lost(None)
        received = client.receive_data(bytes(transport.written))
        body = sum(len(e.data) for e in received if isinstance(e, h2.events.DataReceived))
        assert written and body == messages * CHUNK, (body, messages * CHUNK)
        return before, body

    return asyncio.run(scenario())


def test_64k_messages_of_an_app_that_never_suspends_share_writes() -> None:
    messages = 64  # 4 MiB
    writes, _ = _stream(messages)
    # About one write per MiB (plus SETTINGS, the head and the end), not one per message.
    assert writes <= messages // 4, writes


def test_no_write_waits_for_more_than_the_eager_limit() -> None:
    """The app cannot queue a whole large body before the transport sees any of it."""
    messages = 64
    writes, _ = _stream(messages)
    assert writes >= messages * CHUNK // _EAGER_FLUSH, writes
