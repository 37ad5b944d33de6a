"""HTTP/2 client connection: many exchanges over one connection, each a stream (RFC 9113).

The driver waits for the server's SETTINGS before the first request (its
MAX_CONCURRENT_STREAMS decides how many may be open), queues requests beyond that limit in
FIFO order (§5.1.2), sends request bodies as the flow-control windows allow and resumes on
WINDOW_UPDATE (§6.9), credits response data back only as the caller reads it, and treats a
GOAWAY as the end of new streams: the streams above its last stream id were refused by the
core, the others finish (§6.8).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque

from caboose.client.driver import ClientDriver, Options, Request, Unavailable
from caboose.client.errors import ConnectionLost, PoolTimeout, StreamReset
from caboose.client.stream import ClientStream
from caboose.core.events import GoAwayReceived
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.settings import SettingCode
from caboose.core.h2.stream import WE_SENDING, StreamState
from caboose.errors import ErrorCode, LocalProtocolError


class H2ClientDriver(ClientDriver):
    http_version = "HTTP/2"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.core = self.h2 = H2Connection(
            client_side=True,
            local_settings={SettingCode.INITIAL_WINDOW_SIZE: options.stream_window},
            connection_window=options.connection_window,
        )
        self.ready: asyncio.Future[None] = self.loop.create_future()  # the server's SETTINGS
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._granted = 0  # slots handed to waiters that have not opened their stream yet
        self._window_waiters: dict[int, asyncio.Future[None]] = {}
        self._exhausted = False  # every stream id is used
        self._last_received = self.loop.time()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.h2.initiate()
        self.flush()
        self._arm_ping()

    def data_received(self, data: bytes) -> None:
        self._last_received = self.loop.time()
        super().data_received(data)
        self._grant()

    @property
    def usable(self) -> bool:
        h2 = self.h2
        return (
            super().usable
            and not self._exhausted
            and h2.goaway_received is None
            and h2.goaway_sent is None
        )

    @property
    def idle(self) -> bool:
        return not self.streams

    # -- starting exchanges ------------------------------------------------------------------

    async def start(self, request: Request) -> ClientStream:
        core = self.h2
        await self._slot(request)
        while core.open_streams >= core.peer.max_concurrent_streams:
            await self._slot(request)  # the server lowered its limit meanwhile (§5.1.2)
        if not self.usable:
            raise Unavailable
        try:
            stream_id = core.get_next_available_stream_id()
        except LocalProtocolError:  # 2**31 stream ids used (§5.1.1): a new connection
            self._exhausted = True
            if not self.streams:
                self.close()
            raise Unavailable from None
        head = [
            (b":method", request.method),
            (b":scheme", request.scheme),
            (b":authority", request.authority),
            (b":path", request.target),
            *request.headers,
        ]
        core.send_headers(stream_id, head, end_stream=request.end_stream)
        stream = ClientStream(self, stream_id, request.limits, request.description)
        stream.request_done = request.end_stream
        self.streams[stream_id] = stream
        self.exchanges += 1
        self.flush_soon()
        return stream

    def _room(self) -> int:
        core = self.h2
        return core.peer.max_concurrent_streams - core.open_streams - self._granted

    async def _slot(self, request: Request) -> None:
        """Wait for room under the server's MAX_CONCURRENT_STREAMS, in arrival order."""
        if not self._slot_waiters and self._room() > 0:
            return
        waiter = self.loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            async with asyncio.timeout(request.pool_timeout):
                await waiter
        except (asyncio.CancelledError, TimeoutError) as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._granted -= 1  # granted, then cancelled: pass the slot on
                self._grant()
            elif waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(
                    f"{request.description}: no stream free within {request.pool_timeout} s "
                    f"(the server allows {self.h2.peer.max_concurrent_streams})"
                ) from None
            raise
        self._granted -= 1

    def _grant(self) -> None:
        waiters = self._slot_waiters
        while waiters and self._room() > 0:
            waiter = waiters.popleft()
            if not waiter.done():
                self._granted += 1
                waiter.set_result(None)

    # -- request bodies ------------------------------------------------------------------------

    async def send_data(self, stream: ClientStream, data: bytes, *, end_stream: bool) -> None:
        core = self.h2
        stream_id = stream.stream_id
        view = memoryview(data)
        while True:
            self.check_sending(stream)
            allowed = core.sendable(stream_id)
            if len(view) <= allowed:
                core.send_data(stream_id, view, end_stream=end_stream)
                break
            if allowed > 0:
                core.send_data(stream_id, view[:allowed])
                view = view[allowed:]
                self.flush_soon()
            await self.bounded(self._window(stream_id), stream)
        self.flush_soon()
        if end_stream:
            self.sent(stream)
        await self.drained(stream)

    def check_sending(self, stream: ClientStream) -> None:
        super().check_sending(stream)
        if self.h2.stream_state(stream.stream_id) not in WE_SENDING:
            # The server ended the exchange (a response, then RST_STREAM NO_ERROR: §8.1)
            raise StreamReset(f"{stream.target}: the server closed the stream", ErrorCode.NO_ERROR)

    def sent(self, stream: ClientStream) -> None:
        super().sent(stream)
        self._forget_if_closed(stream)

    def _window(self, stream_id: int) -> asyncio.Future[None]:
        waiter = self._window_waiters.get(stream_id)
        if waiter is None or waiter.done():
            waiter = self._window_waiters[stream_id] = self.loop.create_future()
        return waiter

    def _wake_window(self, stream_id: int) -> None:
        waiter = self._window_waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_window(self, stream_id: int) -> None:
        if stream_id:
            self._wake_window(stream_id)
            return
        for waiting in list(self._window_waiters):
            self._wake_window(waiting)

    # -- reading and ending ----------------------------------------------------------------------

    def consumed(self, stream_id: int, size: int) -> None:
        if self.error is None:
            self.h2.acknowledge(stream_id, size)
            self.flush_soon()

    def cancel(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if self.error is None:
            self.h2.reset_stream(stream_id, ErrorCode.CANCEL)
            self.flush_soon()
        self._wake_window(stream_id)
        if stream is not None:
            self.on_stream_closed(stream)

    def on_end(self, stream: ClientStream) -> None:
        self._forget_if_closed(stream)

    def _forget_if_closed(self, stream: ClientStream) -> None:
        closed = self.h2.stream_state(stream.stream_id) is StreamState.CLOSED
        if closed and self.streams.pop(stream.stream_id, None) is not None:
            self.on_stream_closed(stream)

    def on_stream_closed(self, stream: ClientStream) -> None:
        self._wake_window(stream.stream_id)  # a sender still waiting learns of the reset
        self._grant()
        if not self.streams and not self.usable and self.error is None:
            self.close()  # a GOAWAY's last stream is done: nothing more will come

    # -- connection-level ------------------------------------------------------------------------

    def on_settings(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        self._grant()  # MAX_CONCURRENT_STREAMS may have grown

    def on_goaway(self, event: GoAwayReceived) -> None:
        # The core has already refused our streams above event.last_stream_id (StreamReset
        # REFUSED_STREAM, before this event). Those waiting for a slot go elsewhere.
        self._release_waiters(Unavailable())
        if not self.streams:
            self.close()

    def on_lost(self) -> None:
        self._release_waiters(Unavailable())
        for stream_id in list(self._window_waiters):
            self._wake_window(stream_id)
        if not self.ready.done():
            self.ready.set_exception(self.error or ConnectionLost("the connection closed"))
            self.ready.exception()
        for timer in (self._ping_timer, self._pong_deadline):
            if timer is not None:
                timer.cancel()

    def _release_waiters(self, error: Exception) -> None:
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    # -- keep-alive PING (§6.7) ------------------------------------------------------------------

    def _arm_ping(self) -> None:
        interval = self.options.keepalive_ping
        if interval is not None and self.error is None:
            self._ping_timer = self.loop.call_later(interval, self._maybe_ping)

    def _maybe_ping(self) -> None:
        interval = self.options.keepalive_ping
        assert interval is not None
        idle = self.loop.time() - self._last_received
        if idle >= interval and self._pong_deadline is None and self.error is None:
            self.h2.ping(os.urandom(8))
            self.flush()
            self._pong_deadline = self.loop.call_later(self.options.ping_timeout, self._no_pong)
        self._arm_ping()

    def on_pong(self) -> None:
        if self._pong_deadline is not None:
            self._pong_deadline.cancel()
            self._pong_deadline = None

    def _no_pong(self) -> None:
        self._pong_deadline = None
        timeout = self.options.ping_timeout
        self.lost(ConnectionLost(f"the server did not answer a keep-alive PING in {timeout} s"))
