"""HTTP/1.1 over asyncio: the driver's hooks for H1Connection, one app task at a time.

Requests may arrive pipelined; they are answered in order (RFC 9112 §9.3.2), so the driver
runs one request's app at a time and stops reading while others wait their turn. A request
that asks to upgrade is offered to the handlers the negotiator gave this driver (h2c today,
WebSocket next); the driver itself knows no other protocol.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from caboose.core.events import AppHeaders, DataReceived, RequestReceived
from caboose.core.h1 import ConnectionState, H1Connection
from caboose.core.headers import has_token
from caboose.transport.connection import open_stream
from caboose.transport.driver import FRESH_GRACE, Driver, Exchange
from caboose.transport.flow import READY, ReadGate
from caboose.transport.state import ServerState

# Takes over the connection for an Upgrade request (and returns True), or declines.
UpgradeHandler = Callable[["H1Driver", RequestReceived], bool]


class H1Driver(Driver[H1Connection]):
    """One HTTP/1.1 connection."""

    protocol = "HTTP/1.1"

    def __init__(
        self, state: ServerState, upgrades: Mapping[bytes, UpgradeHandler] | None = None
    ) -> None:
        super().__init__(state)
        config = state.config
        self.core = H1Connection(
            max_request_line=config.limit_request_line,
            max_header_size=config.limit_header_size,
            max_headers=config.limit_header_count,
        )
        self.core.default_headers = state.default_headers
        self.upgrades = upgrades or {}
        self.waiting: deque[Exchange] = deque()  # pipelined requests behind the active one
        self.active: Exchange | None = None
        self.read_gate: ReadGate | None = None
        # Timers are armed rarely and checked lazily: arming and cancelling one per request
        # would cost more than the rest of a hello-world response.
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.head_since: float | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.fresh = True  # no request has arrived yet
        self.close_after_first = False  # shut down while fresh: serve one request, then close
        self.fresh_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.read_gate = ReadGate(self.transport, self.state.config.limit_body_buffer)
        self._became_idle()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # closing: read only so that the kernel has no cause to reset
        self.idle_since = None
        core = self.core
        self.handle(core.receive_data(data))
        self._after_read(core)

    def _after_read(self, core: H1Connection) -> None:
        if core.output or core.state is not ConnectionState.OPEN:
            self._flush()  # an error response from the parser, or a close to carry out
        if core.in_head:
            if self.head_since is None:
                self._head_began()
        else:
            self.head_since = None

    def stop_timers(self) -> None:
        for timer in (self.idle_timer, self.head_timer, self.fresh_timer):
            if timer is not None:
                timer.cancel()

    # -- hooks of the driver -------------------------------------------------------------------

    def on_request(self, event: RequestReceived) -> None:
        if event.upgrade:
            for token, handler in self.upgrades.items():
                if has_token(event.upgrade, token) and handler(self, event):
                    return  # the connection speaks another protocol now
        if self.fresh:
            self.fresh = False
            if self.close_after_first:
                # This one is served, with Connection: close. Before the app starts: on 3.12+
                # it may have answered before admit() returns.
                self.core.start_closing()
        stream = open_stream(self, self.info, event, self.state)
        self.streams[event.stream_id] = stream
        self.admit(stream)

    def admit(self, stream: Exchange) -> None:
        if self.active is None:
            self.active = stream
            self.run(stream)
        else:
            self.waiting.append(stream)
            # Pipelined requests wait their turn; stop reading more of them meanwhile.
            assert self.read_gate is not None
            self.read_gate.pause()

    def _start(self, stream: Exchange) -> None:
        self.active = stream
        self.run(stream)

    def on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.feed_body(event.data)
            assert self.read_gate is not None
            self.read_gate.received(len(event.data))

    def on_terminated(self, outcome: str) -> None:
        # The peer closed or sent garbage: the apps hear it; the response owed may still go
        # out (a 400 follows it), and connection_lost logs whatever stays unfinished.
        for stream in self.streams.values():
            stream.disconnect()

    def after_response(self) -> None:
        self._flush()
        core = self.core
        if core.state is not ConnectionState.OPEN:
            return
        self.active = None
        if self.waiting:
            self._start(self.waiting.popleft())
            if not self.waiting:
                assert self.read_gate is not None
                self.read_gate.resume()
        elif core.resumable:  # an upgrade was declined: what followed the request is next
            self.idle_since = None
            self.handle(core.resume())
            self._after_read(core)
        else:
            self._became_idle()  # a partial next head keeps it busy: checked when the timer fires

    def answer(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        """Answer a request the driver took no stream for (a refused upgrade), then go on."""
        self.core.send_response(stream_id, status, headers, body)
        self.after_response()

    # -- StreamSink: what HTTPStream calls -----------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None:
        self.core.send_informational(stream_id, status, headers)
        self._flush()

    def send_head(
        self, stream_id: int, status: int, headers: AppHeaders, *, end_stream: bool, trailers: bool
    ) -> None:
        self.core.send_head(stream_id, status, headers, end_stream=end_stream, trailers=trailers)
        if end_stream:
            self.response_done(self.streams[stream_id])

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.core.send_data(stream_id, data, end_stream)
        if end_stream:
            self.response_done(self.streams[stream_id])
        else:
            self._flush()

    def send_response(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        self.core.send_response(stream_id, status, headers, body)
        self.response_done(self.streams[stream_id])

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        self.core.send_trailers(stream_id, headers)
        self.response_done(self.streams[stream_id])

    def writable(self, stream_id: int) -> Awaitable[None]:
        """HTTP/1.1 has no flow control of its own: only the socket pushes back."""
        write_gate = self.write_gate
        return READY if not write_gate.paused else write_gate.wait()

    def consumed(self, stream_id: int, size: int) -> None:
        assert self.read_gate is not None
        self.read_gate.consumed(size)

    def reset(self, stream_id: int) -> None:
        self.core.reset_stream(stream_id)
        self._flush()

    # -- output --------------------------------------------------------------------------------

    def _flush(self) -> None:
        core = self.core
        if not core.output and core.state is ConnectionState.OPEN:
            return
        data = core.data_to_send()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data:
            transport.write(data)
        if core.state is ConnectionState.DONE:
            self.close()

    def flush_output(self) -> None:
        """What an upgrade handler calls to send its 101 (a method, not an alias of _flush:
        mypyc cannot compile a class attribute bound to a method)."""
        self._flush()

    # -- timers ------------------------------------------------------------------------------

    def _became_idle(self) -> None:
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            delay = self.state.config.timeout_keep_alive
            self.idle_timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        """Close a keep-alive connection idle for the whole timeout; else look again later."""
        self.idle_timer = None
        if self.idle_since is None or not self.core.idle or self.transport is None:
            return  # busy again: the next idle period arms a new timer
        remaining = self.idle_since + self.state.config.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.idle_timer = self.loop.call_later(remaining, self._check_idle)
        else:
            self.close()

    def _head_began(self) -> None:
        self.head_since = self.loop.time()
        if self.head_timer is None:
            delay = self.state.config.header_read_timeout
            self.head_timer = self.loop.call_later(delay, self._check_head)

    def _check_head(self) -> None:
        """RFC 9110 §15.5.9: a client too slow to send its head gets 408 (slowloris)."""
        self.head_timer = None
        if self.head_since is None or not self.core.in_head or self.transport is None:
            return
        remaining = self.head_since + self.state.config.header_read_timeout - self.loop.time()
        if remaining > 0:
            self.head_timer = self.loop.call_later(remaining, self._check_head)
            return
        self.core.send_timeout()
        self._flush()

    def shutdown(self) -> None:
        """Graceful shutdown: finish owed responses, read nothing new, close when idle.

        A connection that has not brought its first request yet was accepted just before the
        listener closed, and its client is sending that request: it is served (then the
        connection closes), or the connection closes after FRESH_GRACE without one. Closing
        it at once would lose a request the client believes was accepted.
        """
        if self.fresh:
            self.close_after_first = True
            self.fresh_timer = self.loop.call_later(FRESH_GRACE, self._close_if_fresh)
            return
        self.core.start_closing()
        if self.active is None and self.transport is not None:
            self.close()

    def _close_if_fresh(self) -> None:
        if self.fresh:
            self.close()
