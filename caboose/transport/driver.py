"""The one connection driver: what every protocol does between its core and its streams.

A driver owns one connection. It feeds received bytes to a sans-I/O core, dispatches the
core's events to the streams, starts one task per request (or answers 503 when the server is
full or stopping), keeps the response-done bookkeeping and the access log, and closes
lingering. What differs between HTTP/1.1 and HTTP/2 is a handful of hooks, overridden by
``H1Driver`` and ``H2Driver``: how data is credited, when output is flushed, what a reset or
a GOAWAY means, and how a response may be written. The WebSocket session and the client
are meant to be further subclasses, not further loops.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any

from caboose.asgi.http import ASGIApp, Scope
from caboose.core.events import (
    AppHeaders,
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    Headers,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from caboose.transport.connection import ConnectionInfo, open_stream
from caboose.transport.flow import GatedProtocol, close_lingering
from caboose.transport.state import ServerState
from caboose.transport.tasks import task_starter

_BUSY_BODY = b"Service Unavailable\n"
# Seconds a connection that has brought no request yet gets to bring one once the server
# begins a graceful shutdown: it was accepted (its client will not retry), and its first
# request (or TLS handshake) may be on its way.
FRESH_GRACE = 1.0
_BUSY_HEADERS: Headers = [
    (b"content-type", b"text/plain"),
    (b"content-length", b"%d" % len(_BUSY_BODY)),
]


class ServerCore(typing.Protocol):
    """The command interface both server cores offer: bytes in and events out; commands
    that queue bytes; the queued bytes out. (core/h1.py and core/h2/connection.py.)"""

    def receive_data(self, data: bytes) -> list[Event]: ...

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None: ...

    def send_head(
        self,
        stream_id: int,
        status: int,
        headers: AppHeaders,
        *,
        end_stream: bool = False,
        trailers: bool = False,
    ) -> None: ...

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None: ...

    # The default is HTTP/2's CANCEL (RFC 9113 §7), which HTTP/1.1 ignores; a literal rather
    # than `...`, which a compiled build would evaluate as the default.
    def reset_stream(self, stream_id: int, error_code: int = 0x8) -> None: ...

    def data_to_send(self) -> bytes | bytearray: ...


class Exchange(typing.Protocol):
    """What a driver needs of one stream: an HTTPStream (asgi/http.py), or on HTTP/2 also
    a WebSocket (transport/websocket.py: H2WebSocket)."""

    stream_id: int
    status: int
    outcome: str
    sent: int
    task: asyncio.Task[None] | None

    @property
    def scope(self) -> Scope: ...

    @property
    def started(self) -> float: ...

    @property
    def response_headers(self) -> Iterable[Any]: ...

    def run(self, app: ASGIApp) -> Coroutine[Any, Any, None]: ...

    def feed_body(self, data: bytes) -> None: ...

    def feed_trailers(self, headers: Headers) -> None: ...

    def end_body(self) -> None: ...

    def disconnect(self) -> None: ...

    def cancel_later(self, grace: float) -> None: ...


if typing.TYPE_CHECKING:  # mypy proves that both cores offer the whole interface
    from caboose.core.h1 import H1Connection
    from caboose.core.h2.connection import H2Connection

    _H1_IS_A_SERVER_CORE: ServerCore = H1Connection()
    _H2_IS_A_SERVER_CORE: ServerCore = H2Connection(client_side=False)


CoreT = typing.TypeVar("CoreT", bound=ServerCore)


class Driver(GatedProtocol, typing.Generic[CoreT]):
    """One connection: a core, its streams, and the loop between them.

    Generic in its core so that each protocol's driver sees its own core's whole interface
    while this class sees only ``ServerCore`` (mypyc forbids narrowing an attribute's type
    in a subclass, which is how this used to be spelled)."""

    core: CoreT
    info: ConnectionInfo
    protocol = ""  # what the metrics call it: HTTP/1.1, HTTP/2

    def __init__(self, state: ServerState) -> None:
        super().__init__()
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.create_task = task_starter(self.loop)
        self.streams: dict[int, Exchange] = {}
        self.transport: asyncio.Transport | None = None
        self.lingering = False  # the close has begun (half-closed, draining the input)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.info = ConnectionInfo(transport, self.state)
        self.state.connections.add(self)
        if self.state.metrics is not None:
            self.state.metrics.connection_opened(self.protocol)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # closing: read only so that the kernel has no cause to reset
        self.handle(self.core.receive_data(data))
        self.received()

    def eof_received(self) -> bool | None:
        if not self.lingering:
            self.handle(self.core.receive_data(b""))
        return None  # close the transport: connection_lost tells every stream

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.stop_timers()
        self.disconnect_all("client disconnected")
        self.write_gate.close()

    # -- events from the core ----------------------------------------------------------------

    def handle(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case RequestReceived():
                    self.on_request(event)
                case DataReceived():
                    self.on_data(event)
                case StreamEnded(stream_id=stream_id):
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.end_body()
                case TrailersReceived(stream_id=stream_id, headers=headers):
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.feed_trailers(headers)
                case WindowOpened(stream_id=stream_id):
                    self.on_window(stream_id)
                case StreamReset(stream_id=stream_id):
                    self.on_reset(stream_id)
                case GoAwayReceived():
                    self.on_goaway()
                case ConnectionTerminated(error_code=code):
                    self.on_terminated("client disconnected" if code == 0 else "connection error")

    def on_request(self, event: RequestReceived) -> None:
        stream = open_stream(self, self.info, event, self.state)
        self.streams[event.stream_id] = stream
        self.admit(stream)

    def run(self, stream: Exchange) -> None:
        """Start the stream's app, or answer 503 when the server is full.

        A request that reaches a connection during a graceful shutdown is served: HTTP/1.1
        closes after its response, and HTTP/2's GOAWAY promised to process it (RFC 9113
        §6.8); refusing it would lose a request the client cannot know to retry."""
        state = self.state
        if state.over_capacity():
            stream.status = 503
            stream.outcome = "refused"
            stream.sent = len(_BUSY_BODY)
            stream.disconnect()
            self.send_response(stream.stream_id, 503, _BUSY_HEADERS, _BUSY_BODY)
            return
        if state.requests_left is not None:
            state.count_request()
        task = self.create_task(stream.run(state.app))
        if not task.done():
            stream.task = task
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    def disconnect_all(self, outcome: str) -> None:
        """The connection is gone: every stream hears it, is logged, and its app is cancelled
        if it ignores the disconnect for the grace period."""
        grace = self.state.config.cancel_grace
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.disconnect()
            stream.cancel_later(grace)
            self.log_unfinished(stream, outcome)

    # -- bookkeeping ---------------------------------------------------------------------------

    def response_done(self, stream: Exchange) -> None:
        """The response's last byte is handed to the core."""
        self.streams.pop(stream.stream_id, None)
        ended = self.state.ended
        if ended is not None:
            ended(stream, stream.outcome or "completed")
        self.after_response()

    def log_unfinished(self, stream: Exchange, outcome: str) -> None:
        """An exchange that ended before its response reached the core: logged once, with
        how it ended (its own outcome, such as an app error, when it has one)."""
        ended = self.state.ended
        if ended is not None:
            ended(stream, stream.outcome or outcome)

    def close(self) -> None:
        """Close lingering (flow.close_lingering): input that arrives meanwhile is dropped."""
        if self.transport is not None and not self.lingering:
            self.lingering = True
            close_lingering(self.transport, self.loop)

    # -- hooks ---------------------------------------------------------------------------------

    def admit(self, stream: Exchange) -> None:
        """A new stream: run it now (HTTP/2) or when its turn comes (HTTP/1.1)."""
        self.run(stream)

    def received(self) -> None:
        """After the events of one read: flush, arm timers."""

    def after_response(self) -> None:
        """A response finished: start the next, note idleness, close if closing."""

    def on_data(self, event: DataReceived) -> None:
        raise NotImplementedError

    def on_window(self, stream_id: int) -> None:
        """More may be sent (HTTP/2 flow control)."""

    def on_reset(self, stream_id: int) -> None:
        """The peer reset a stream (HTTP/2)."""

    def on_goaway(self) -> None:
        """The peer will open no more streams (HTTP/2)."""

    def on_terminated(self, outcome: str) -> None:
        """The core ended the connection: the peer closed it, or broke the protocol."""

    def stop_timers(self) -> None:
        """The connection is gone or handed over: cancel what is armed."""

    # -- the StreamSink every driver is to its streams (asgi/http.py), per protocol --------------

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None:
        raise NotImplementedError

    def send_head(
        self, stream_id: int, status: int, headers: AppHeaders, *, end_stream: bool, trailers: bool
    ) -> None:
        raise NotImplementedError

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        raise NotImplementedError

    def send_response(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        raise NotImplementedError

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        raise NotImplementedError

    def writable(self, stream_id: int) -> Awaitable[None]:
        raise NotImplementedError

    def consumed(self, stream_id: int, size: int) -> None:
        raise NotImplementedError

    def reset(self, stream_id: int) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Graceful shutdown: finish what is owed, take nothing new, close."""
        raise NotImplementedError
