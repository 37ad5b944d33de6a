"""Backpressure in the HTTP/1.1 transport, with a fake asyncio transport (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from caboose.config import Config
from caboose.transport.flow import WriteGate
from caboose.transport.http1 import H1Driver
from caboose.transport.state import ServerState


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def test_reading_pauses_until_the_app_consumes_the_body() -> None:
    consumed = asyncio.Event()
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        while (await receive()).get("more_body"):
            pass
        consumed.set()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async def scenario() -> FakeTransport:
        state = ServerState(config=Config(limit_body_buffer=1000), app=app)
        protocol = H1Driver(state)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 3000
        )
        assert not transport.reading  # 3000 unread bytes > 1000: the gate closed
        gate.set()
        protocol.data_received(b"x" * 2000)
        await asyncio.wait_for(consumed.wait(), 5)
        assert transport.reading  # consumed: reading resumed
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(scenario())
    assert transport.written.startswith(b"HTTP/1.1 204 ")


def test_write_gate_holds_senders_until_resumed() -> None:
    async def scenario() -> list[str]:
        gate = WriteGate()
        order: list[str] = []
        gate.pause()

        async def sender() -> None:
            await gate.wait()
            order.append("sent")

        task = asyncio.ensure_future(sender())
        await asyncio.sleep(0.01)
        order.append("resumed")
        gate.resume()
        await task
        return order

    assert asyncio.run(scenario()) == ["resumed", "sent"]
