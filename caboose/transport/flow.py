"""Backpressure gates: pause reading above a high-water mark, make writers wait while paused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from typing import Any


class _Ready:
    """An awaitable that is already done: what a sender awaits when nothing holds it back
    (cheaper than a coroutine or a future, and bound to no event loop)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes at once: ``await`` returns None without suspending


READY: Awaitable[None] = _Ready()


class WriteGate:
    """Tracks the transport's pause_writing/resume_writing; senders await ``wait()``.

    Nothing polls: a paused writer sleeps on a future that resume_writing (or close) resolves.
    """

    __slots__ = ("_paused", "_waiters")

    def __init__(self) -> None:
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def wait(self) -> Awaitable[None]:
        if not self._paused:
            return READY
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def close(self) -> None:
        """The connection is gone: release every waiter (their sends become no-ops)."""
        self.resume()


class ReadGate:
    """Pauses the transport while received-but-unconsumed body bytes exceed ``high``.

    Reading resumes once the application has consumed enough to fall to ``high // 4``, the
    same hysteresis idea as uvicorn's watermarks, so we do not flap on every chunk.
    """

    __slots__ = ("_buffered", "_high", "_low", "_paused", "_transport")

    def __init__(self, transport: asyncio.Transport, high: int) -> None:
        self._transport = transport
        self._high = high
        self._low = high // 4
        self._buffered = 0
        self._paused = False

    def received(self, size: int) -> None:
        self._buffered += size
        if not self._paused and self._buffered > self._high:
            self._paused = True
            self._transport.pause_reading()

    def consumed(self, size: int) -> None:
        self._buffered = max(0, self._buffered - size)
        if self._paused and self._buffered <= self._low:
            self.resume()

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()


class GatedProtocol(asyncio.Protocol):
    """An asyncio protocol whose writers wait while the transport's buffer is full."""

    def __init__(self) -> None:
        self.write_gate = WriteGate()

    def pause_writing(self) -> None:
        self.write_gate.pause()

    def resume_writing(self) -> None:
        self.write_gate.resume()


LINGER = 2.0  # seconds a closing connection drains the peer's input before it really closes


def close_lingering(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """Close without destroying what we just wrote.

    Closing a socket while the peer's bytes sit unread in the kernel makes Linux send a TCP
    RST, and the RST can overtake our last bytes (a GOAWAY, a final response): the peer reads
    "connection reset" instead of them. So half-close (FIN after our data), keep reading and
    let the protocol discard what comes, and close when the peer closes or LINGER has passed:
    the lingering close HTTP servers commonly do. TLS cannot half-close; it just closes.
    """
    if transport.is_closing():
        return
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    transport.resume_reading()
    loop.call_later(LINGER, transport.close)
