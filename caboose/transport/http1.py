"""HTTP/1.1 over asyncio: bytes between the socket and H1Connection, events to HTTPStreams."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import typing
from collections import deque
from collections.abc import Awaitable

from caboose.asgi.http import HTTPStream
from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    Headers,
    RequestReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.h1 import ConnectionState, H1Connection
from caboose.core.h2.frames import PREFACE
from caboose.transport.connection import ConnectionInfo, log_access, open_stream
from caboose.transport.flow import GatedProtocol, ReadGate, close_lingering
from caboose.transport.http2 import H2Protocol, h2c_upgrade_settings
from caboose.transport.state import ServerState
from caboose.transport.tasks import task_starter

logger = logging.getLogger("caboose.error")

_BUSY = b"Service Unavailable\n"


class H1Protocol(GatedProtocol):
    """One HTTP/1.1 connection. Runs one app task at a time, in request order."""

    def __init__(self, state: ServerState) -> None:
        super().__init__()
        self.state = state
        config = state.config
        self.core = H1Connection(
            max_request_line=config.limit_request_line,
            max_header_size=config.limit_header_size,
            max_headers=config.limit_header_count,
        )
        self.core.default_headers = state.default_headers
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, HTTPStream] = {}
        self.waiting: deque[HTTPStream] = deque()  # pipelined requests behind the active one
        self.active: HTTPStream | None = None
        self.transport: asyncio.Transport | None = None
        self.read_gate: ReadGate | None = None
        # Timers are armed rarely and checked lazily: arming and cancelling one per request
        # would cost more than the rest of a hello-world response.
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.head_since: float | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.sniffing = False
        self.sniffed = b""
        self.lingering = False  # the close has begun (half-closed, draining the input)
        self.create_task = task_starter(self.loop)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = typing.cast(asyncio.Transport, transport)
        self.transport = transport
        self.read_gate = ReadGate(transport, self.state.config.h11_max_incomplete_event_size)
        self.info = ConnectionInfo(transport, self.state)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._switch_to_h2(b"")  # RFC 9113 §3.2: TLS with ALPN "h2"
            return
        # RFC 9113 §3.3: cleartext HTTP/2 starts with the client preface (prior knowledge).
        self.sniffing = self.state.config.http2 and ssl_object is None
        self.state.connections.add(self)
        self._became_idle()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # closing: read only so that the kernel has no cause to reset
        if self.sniffing:
            data = self._sniff(data)
            if not data:
                return
        self.idle_since = None
        core = self.core
        self._handle(core.receive_data(data))
        if core.output or core.state is not ConnectionState.OPEN:
            self._flush()  # an error response from the parser, or a close to carry out
        if core.in_head:
            if self.head_since is None:
                self._head_began()
        else:
            self.head_since = None

    def _sniff(self, data: bytes) -> bytes:
        """Hold the first bytes until they show whether this is HTTP/2's preface."""
        buffered = self.sniffed + data
        if PREFACE.startswith(buffered[: len(PREFACE)]):
            if len(buffered) < len(PREFACE):
                self.sniffed = buffered
                return b""
            self._switch_to_h2(buffered)
            return b""
        self.sniffing = False
        self.sniffed = b""
        return buffered

    def _upgrade_to_h2(self, settings: bytes, event: RequestReceived) -> None:
        """RFC 7540 §3.2: 101, then HTTP/2 with this request as stream 1."""
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
        )
        # The request is stream 1, half-closed (RFC 7540 §3.2), with the facts read from it.
        request = dataclasses.replace(event, stream_id=1, http_version="2", upgrade=b"")
        self._switch_to_h2(b"", H2Protocol(self.state, upgrade=(settings, request)))

    def _switch_to_h2(self, data: bytes, protocol: H2Protocol | None = None) -> None:
        """Hand the connection to the HTTP/2 driver, with the bytes read so far."""
        self.sniffing = False
        for timer in (self.idle_timer, self.head_timer):
            if timer is not None:
                timer.cancel()
        self.state.connections.discard(self)
        assert self.transport is not None
        protocol = protocol or H2Protocol(self.state)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if data:
            protocol.data_received(data)

    def eof_received(self) -> bool | None:
        self._handle(self.core.receive_data(b""))
        return None  # close the transport: connection_lost tells every stream

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.idle_timer, self.head_timer):
            if timer is not None:
                timer.cancel()
        self.state.connections.discard(self)
        grace = self.state.config.cancel_grace
        for stream in self.streams.values():
            stream.disconnect()
            stream.cancel_later(grace)  # apps that ignore http.disconnect
        self.write_gate.close()

    # -- events from the core ----------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case RequestReceived():
                    self._on_request(event)
                case DataReceived(stream_id=stream_id, data=data):
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.feed_body(data)
                        assert self.read_gate is not None
                        self.read_gate.received(len(data))
                case TrailersReceived(stream_id=stream_id, headers=headers):
                    if stream_id in self.streams:
                        self.streams[stream_id].feed_trailers(headers)
                case StreamEnded(stream_id=stream_id):
                    if stream_id in self.streams:
                        self.streams[stream_id].end_body()
                case ConnectionTerminated():
                    self._disconnect_all()

    def _on_request(self, event: RequestReceived) -> None:
        if self.state.config.h2c_upgrade and event.end_stream and event.stream_id == 1:
            settings = h2c_upgrade_settings(event.headers)
            if settings is not None:
                self._upgrade_to_h2(settings, event)
                return
        stream = open_stream(self, self.info, event, self.state)
        self.streams[event.stream_id] = stream
        if self.active is None:
            self._start(stream)
        else:
            self.waiting.append(stream)
            # Pipelined requests wait their turn; stop reading more of them meanwhile.
            assert self.read_gate is not None
            self.read_gate.pause()

    def _start(self, stream: HTTPStream) -> None:
        self.active = stream
        state = self.state
        if state.shutting_down or state.over_capacity():
            self._refuse(stream)
            return
        task = self.create_task(stream.run(state.app))
        if not task.done():
            stream.task = task
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    def _refuse(self, stream: HTTPStream) -> None:
        stream.status = 503
        stream.disconnect()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(_BUSY))]
        self.core.send_headers(stream.stream_id, 503, headers)
        self.core.send_data(stream.stream_id, _BUSY, end_stream=True)
        self._response_done(stream)

    def _disconnect_all(self) -> None:
        for stream in self.streams.values():
            stream.disconnect()

    # -- StreamSink: what HTTPStream calls -----------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        self.core.send_informational(stream_id, status, headers)
        self._flush()

    def send_head(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool, trailers: bool
    ) -> None:
        self.core.send_headers(stream_id, status, headers, end_stream=end_stream, trailers=trailers)
        if end_stream:
            self._response_done(self.streams[stream_id])

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.core.send_data(stream_id, data, end_stream=end_stream)
        if end_stream:
            self._response_done(self.streams[stream_id])
        else:
            self._flush()

    def send_response(self, stream_id: int, status: int, headers: Headers, body: bytes) -> None:
        self.core.send_response(stream_id, status, headers, body)
        self._response_done(self.streams[stream_id])

    def writable(self, stream_id: int) -> Awaitable[None]:
        """HTTP/1.1 has no flow control of its own: only the socket pushes back."""
        return self.write_gate.wait()

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        self.core.send_trailers(stream_id, headers)
        self._response_done(self.streams[stream_id])

    def consumed(self, stream_id: int, size: int) -> None:
        assert self.read_gate is not None
        self.read_gate.consumed(size)

    def reset(self, stream_id: int) -> None:
        self.core.reset_stream(stream_id)
        self._flush()

    # -- response cycle bookkeeping ------------------------------------------------------------

    def _response_done(self, stream: HTTPStream) -> None:
        del self.streams[stream.stream_id]
        if self.state.config.access_log:
            log_access(stream)
        self._flush()
        if self.core.state is not ConnectionState.OPEN:
            return
        self.active = None
        if self.waiting:
            self._start(self.waiting.popleft())
            if not self.waiting:
                assert self.read_gate is not None
                self.read_gate.resume()
        else:
            self._became_idle()  # a partial next head keeps it busy: checked when the timer fires

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
        if self.core.state is ConnectionState.DONE:
            self._close()

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
            self._close()

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
        self.core.start_closing()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        self._close()

    def shutdown(self) -> None:
        """Graceful shutdown: finish owed responses, read nothing new, close when idle."""
        self.core.start_closing()
        if self.active is None and self.transport is not None:
            self._close()

    def _close(self) -> None:
        """Close lingering (flow.close_lingering): input that arrives meanwhile is dropped."""
        if self.transport is not None and not self.lingering:
            self.lingering = True
            close_lingering(self.transport, self.loop)
