"""The client's connection driver: bytes to a core in the client role, its events to streams.

The twin of ``transport/driver.py`` on the other side of the wire. A driver owns one
connection: it feeds what arrives to the sans-I/O core, hands the core's events to the
exchanges' ``ClientStream``s, and writes what the core queued once per event-loop turn. What
differs between HTTP/1.1 and HTTP/2 (how an exchange starts, how a body is sent and credited,
what a reset or a GOAWAY means) are hooks that ``H1ClientDriver`` and ``H2ClientDriver``
override.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from caboose.client.errors import (
    ClientError,
    ConnectionLost,
    RemoteProtocolError,
    StreamRefused,
    StreamReset,
    WriteTimeout,
)
from caboose.client.stream import ClientStream, Limits
from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    Headers,
    InformationalResponseReceived,
    PingAcknowledged,
    ResponseReceived,
    SettingsChanged,
    StreamEnded,
    TrailersReceived,
    WindowOpened,
)
from caboose.core.events import StreamReset as StreamResetEvent
from caboose.errors import ErrorCode
from caboose.transport.flow import GatedProtocol


class Unavailable(Exception):
    """This connection cannot take the exchange (closing, GOAWAY, busy): the request was not
    sent, so the pool gives it another connection."""


class ClientCore(typing.Protocol):
    """What both client-role cores offer a driver (core/h1_client.py, core/h2/connection.py)."""

    def receive_data(self, data: bytes) -> list[Event]: ...

    def send_trailers(self, stream_id: int, headers: Headers) -> None: ...

    def data_to_send(self) -> bytes | bytearray: ...


@dataclass(slots=True, frozen=True)
class Request:
    """One request as a driver sends it: fields already bytes, the body still to come."""

    method: bytes
    scheme: bytes
    authority: bytes
    target: bytes  # path and query
    headers: Headers
    end_stream: bool  # no body follows the head
    limits: Limits
    description: str  # "GET https://host/path", for log lines and errors
    pool_timeout: float | None = None  # the longest wait for a connection or a stream slot


@dataclass(slots=True)
class Options:
    """Per-connection settings from the Client."""

    write_timeout: float | None = None
    keepalive_ping: float | None = None  # HTTP/2: PING after this many idle seconds
    ping_timeout: float = 20.0  # ... and give up on the connection without its ACK
    stream_window: int = 1 << 20  # HTTP/2 receive window per stream (INITIAL_WINDOW_SIZE)
    connection_window: int = 16 << 20  # HTTP/2 receive window of the whole connection
    read_buffer: int = 1 << 20  # HTTP/1.1: unread body bytes before we stop reading


def reset_error(code: int, description: str) -> ClientError:
    """What a peer's RST_STREAM means to the caller (RFC 9113 §8.7: REFUSED_STREAM, and the
    streams a GOAWAY did not cover, were not processed and may be retried)."""
    if code == ErrorCode.REFUSED_STREAM:
        return StreamRefused(f"{description}: refused by the server, not processed; retry it")
    return StreamReset(f"{description}: the server reset the stream ({_name(code)})", code)


def malformed_error(code: int, description: str) -> ClientError:
    """We reset a stream whose response broke HTTP/2 (RFC 9113 §8.1.1: malformed)."""
    return RemoteProtocolError(
        f"{description}: the response broke HTTP/2, so the stream was reset ({_name(code)})"
    )


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return hex(code)


class ClientDriver(GatedProtocol):
    """One client connection: a core, its exchanges, and the loop between them."""

    core: ClientCore
    http_version = ""

    def __init__(self, options: Options) -> None:
        super().__init__()
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, ClientStream] = {}
        self.error: ClientError | None = None  # why the connection is over
        self.exchanges = 0  # exchanges started, to know whether a connection was reused
        self.on_released: Callable[[ClientDriver], None] | None = None  # the pool's hooks:
        self.on_closed: Callable[[ClientDriver], None] | None = None  # idle again; gone
        self._flush_pending = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.handle(self.core.receive_data(data))
        self.flush()

    def eof_received(self) -> bool | None:
        self.handle(self.core.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc is not None else ""
        self.lost(ConnectionLost(f"the connection closed{detail}"))
        self.write_gate.close()

    # -- state -----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """New exchanges may start here."""
        return self.error is None and self.transport is not None

    def lost(self, error: ClientError) -> None:
        """The connection is over: every exchange still running ends with ``error``."""
        if self.error is None:
            self.error = error
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.fail(error)
        self.on_lost()
        if self.on_closed is not None:
            self.on_closed(self)
            self.on_closed = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close(self) -> None:
        self.lost(ConnectionLost("the client closed the connection"))

    # -- output ------------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.core.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush_soon(self) -> None:
        """Write what is queued at the end of this loop turn: the heads and frames of many
        exchanges started together leave in one write."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.flush()

    async def drained(self, stream: ClientStream) -> None:
        """Wait while the socket's buffer is full (pause_writing), up to the write timeout."""
        gate = self.write_gate
        if gate.paused:
            await self.bounded(gate.wait(), stream)

    async def bounded(self, waiting: Awaitable[None], stream: ClientStream) -> None:
        timeout = self.options.write_timeout
        try:
            async with asyncio.timeout(timeout):
                await waiting
        except TimeoutError:
            error = WriteTimeout(
                f"{stream.target}: the request body could not be sent for {timeout} s"
            )
            stream.fail(error)
            self.cancel(stream.stream_id)
            raise error from None
        if stream.error is not None:
            raise stream.error

    # -- events from the core ----------------------------------------------------------------

    def handle(self, events: list[Event]) -> None:
        streams = self.streams
        for event in events:
            match event:
                case DataReceived(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream.on_data(event.data, event.flow_controlled_length)
                        self.buffered(event.flow_controlled_length)
                    else:
                        self.consumed(stream_id, event.flow_controlled_length)
                case ResponseReceived(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        self.on_head(stream, event)
                case StreamEnded(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream.on_end()
                        self.on_end(stream)
                case TrailersReceived(stream_id=stream_id, headers=headers):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream.on_trailers(headers)
                case InformationalResponseReceived(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream.on_informational(event.status, event.headers)
                case StreamResetEvent(stream_id=stream_id, error_code=code, remote=remote):
                    stream = streams.pop(stream_id, None)
                    if stream is not None:
                        if remote:
                            stream.fail(reset_error(code, stream.target))
                        else:  # the core reset it: the server's response broke the protocol
                            stream.fail(malformed_error(code, stream.target))
                        self.on_stream_closed(stream)
                case WindowOpened(stream_id=stream_id):
                    self.on_window(stream_id)
                case SettingsChanged():
                    self.on_settings()
                case PingAcknowledged():
                    self.on_pong()
                case GoAwayReceived():
                    self.on_goaway(event)
                case ConnectionTerminated(error_code=code, reason=reason):
                    if code == ErrorCode.NO_ERROR:
                        self.lost(ConnectionLost(f"the connection closed: {reason}"))
                    else:
                        self.lost(RemoteProtocolError(f"protocol error: {reason}"))

    # -- hooks -------------------------------------------------------------------------------

    async def start(self, request: Request) -> ClientStream:
        """Send a request head and return the exchange's stream."""
        raise NotImplementedError

    async def send_data(self, stream: ClientStream, data: bytes, *, end_stream: bool) -> None:
        raise NotImplementedError

    async def send_trailers(self, stream: ClientStream, headers: Headers) -> None:
        """The request's trailer section, which ends it (RFC 9110 §6.5)."""
        self.check_sending(stream)
        self.core.send_trailers(stream.stream_id, headers)
        self.flush_soon()
        self.sent(stream)
        await self.drained(stream)

    def check_sending(self, stream: ClientStream) -> None:
        """Raise what stops the request body: the connection's end, or the exchange's."""
        if self.error is not None:
            raise self.error
        if stream.error is not None:
            raise stream.error

    def sent(self, stream: ClientStream) -> None:
        """The request is all sent."""
        stream.request_done = True

    def buffered(self, size: int) -> None:
        """``size`` body bytes wait for the caller (HTTP/1.1 pauses reading above a mark)."""

    def consumed(self, stream_id: int, size: int) -> None:
        """The caller read ``size`` bytes of a body."""

    def cancel(self, stream_id: int) -> None:
        raise NotImplementedError

    def on_head(self, stream: ClientStream, event: ResponseReceived) -> None:
        stream.on_head(event.status, event.headers, self.http_version)

    def on_end(self, stream: ClientStream) -> None:
        """The server's side of ``stream`` is over."""

    def on_stream_closed(self, stream: ClientStream) -> None:
        """A stream left ``self.streams``: a slot may be free."""

    def on_window(self, stream_id: int) -> None:
        """More may be sent (HTTP/2)."""

    def on_settings(self) -> None:
        """The server's SETTINGS changed (HTTP/2)."""

    def on_pong(self) -> None:
        """Our PING was answered (HTTP/2)."""

    def on_goaway(self, event: GoAwayReceived) -> None:
        """The server opens no more streams (HTTP/2)."""

    def on_lost(self) -> None:
        """The connection is over: release whatever waits on it."""
