"""WebSocket sessions: the sink of a WSStream, over HTTP/1.1 (RFC 6455) or HTTP/2 (RFC 8441).

A session starts when a valid opening handshake arrives and the app has been called. The
app answers it through ``WSStream``: an accept becomes the 101 (HTTP/1.1) or the 200 (HTTP/2),
a close or a ``websocket.http.response`` an ordinary HTTP response. From the acceptance on,
``core/ws.py`` turns bytes into messages and back. ``WSSession`` does everything that does not
depend on what carries the bytes: the receive queue (``--ws-max-queue``), keep-alive pings,
the close timeout, shutdown with 1001. Its two carriers differ in a few hooks:

- ``H1WebSocket`` owns the TCP connection (it is the asyncio protocol from the 101 on); the
  end of the byte stream is the lingering close, pausing input is pausing the socket.
- ``H2WebSocket`` is one stream of an ``H2Driver``, beside ordinary requests; it sends DATA
  under flow control, ends with END_STREAM, gives up with RST_STREAM(CANCEL) (RFC 8441 §5),
  and holds the stream's window credit to pause input.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Awaitable, Coroutine
from typing import Any

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import build_extension, parse_extension

from caboose.asgi.http import ASGIApp, Scope
from caboose.asgi.proxy import apply_proxy_headers
from caboose.asgi.websocket import WSStream
from caboose.core.events import Headers, RequestReceived
from caboose.core.h1 import H1Connection
from caboose.core.ws import (
    ABNORMAL,
    CloseReceived,
    Failed,
    MessageReceived,
    PongReceived,
    WSConnection,
    WSEvent,
)
from caboose.core.ws_handshake import Offer, acceptance
from caboose.errors import ErrorCode, LocalProtocolError
from caboose.transport.connection import ConnectionInfo
from caboose.transport.flow import READY, GatedProtocol, close_lingering
from caboose.transport.state import ServerState

if typing.TYPE_CHECKING:
    from caboose.transport.http2 import H2Driver

_GOING_AWAY = 1001  # RFC 6455 §7.4.1: the server is going down
_KEEPALIVE_TIMEOUT = 1011
_PRE_ACCEPT_LIMIT = 64 * 1024  # bytes a client may send before our acceptance (it should not)
_EAGER_FLUSH = 64 * 1024  # queued output written at once instead of at the end of the turn


def negotiate_deflate(offers: list[bytes]) -> tuple[bytes | None, Extension | None]:
    """RFC 7692 §5: take the first permessage-deflate offer we can honour, if any.

    Inflation is bounded while it inflates: the protocol decodes each message with the
    remaining ``--ws-max-size`` as its limit, so a small frame cannot grow without bound.
    """
    try:
        parsed = [item for value in offers for item in parse_extension(value.decode("latin-1"))]
    except (InvalidHeader, UnicodeDecodeError):
        return None, None
    factory = ServerPerMessageDeflateFactory()
    for name, params in parsed:
        if name != factory.name:
            continue
        try:
            response, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        return build_extension([(name, response)]).encode("latin-1"), extension
    return None, None


def websocket_scope(
    info: ConnectionInfo, state: ServerState, event: RequestReceived, offer: Offer
) -> dict[str, Any]:
    """The ASGI ``websocket`` scope: the request's, as a socket (ASGI spec 2.4)."""
    scope = info.scopes.http(event, {"websocket.http.response": {}})
    del scope["method"]
    if info.behind_proxy:
        apply_proxy_headers(scope, event.headers, state.trusted_proxies)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = offer.subprotocols
    return scope


class WSSession:
    """One WebSocket as the server runs it, whatever carries its bytes."""

    def __init__(self, state: ServerState, scope: dict[str, Any], offer: Offer) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.offer = offer
        self.stream = WSStream(self, scope)
        self.ws: WSConnection | None = None  # from the acceptance on
        self.early = b""  # bytes before the acceptance
        self.queued = 0  # messages fed to the app and not yet taken
        self.input_paused = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
        self.ping_sent: float | None = None  # when the unanswered keep-alive ping went out
        self.outcome = ""
        if state.metrics is not None:
            state.metrics.websocket_started(scope["http_version"])

    # -- hooks of the carrier ------------------------------------------------------------------

    def send_acceptance(self, fields: Headers) -> None:
        raise NotImplementedError

    def deny(self, status: int, headers: Headers) -> None:
        raise NotImplementedError

    def send_denial_body(self, body: bytes, *, end: bool) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """End the byte stream in order (the closing handshake is over, or it failed)."""
        raise NotImplementedError

    def give_up(self) -> None:
        """The peer never finished the closing handshake: drop the byte stream."""
        self.end()

    def pause_input(self) -> None:
        raise NotImplementedError

    def resume_input(self) -> None:
        raise NotImplementedError

    def writable(self) -> Awaitable[None]:
        raise NotImplementedError

    # -- input ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            self.early += data  # a client must wait for the acceptance (RFC 6455 §4.1)
            if len(self.early) > _PRE_ACCEPT_LIMIT:
                self.give_up()
            return
        self.handle(ws.receive_data(data))

    def receive_eof(self) -> None:
        """The peer ended its byte stream: without a close frame, that is a 1006."""
        if self.ws is not None:
            self.handle(self.ws.receive_eof())
        self.stream.closed(ABNORMAL, "")

    def handle(self, events: list[WSEvent]) -> None:
        stream = self.stream
        for event in events:
            match event:
                case MessageReceived(data=data):
                    stream.feed_message(data)
                    self.queued += 1
                    if self.queued >= self.state.config.ws_max_queue and not self.input_paused:
                        self.input_paused = True  # the app is behind: the client waits
                        self.pause_input()
                case CloseReceived(code=code, reason=reason) | Failed(code=code, reason=reason):
                    stream.closed(code, reason)
                case PongReceived():
                    self.ping_sent = None
        self.flush()
        ws = self.ws
        if ws is not None and ws.closing_done and not ws.ended:
            self.end()  # RFC 6455 §7.1.1: the server ends the byte stream first

    # -- WebSocketSink: what WSStream calls ----------------------------------------------------

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        config = self.state.config
        offered, extension = None, None
        if config.ws_per_message_deflate:
            offered, extension = negotiate_deflate(self.offer.extensions)
        self.send_acceptance(acceptance(self.offer, subprotocol, offered, headers))
        self.ws = WSConnection(
            max_size=config.ws_max_size, extensions=[extension] if extension else []
        )
        if config.ws_ping_interval is not None:
            self.ping_timer = self.loop.call_later(config.ws_ping_interval, self._keep_alive)
        early, self.early = self.early, b""
        if early:
            self.receive(early)

    def deny_body(self, body: bytes, *, more: bool) -> None:
        if not more:
            self.outcome = "denied"
        self.stream.sent += len(body)
        self.send_denial_body(body, end=not more)

    def send_message(self, data: bytes | str) -> None:
        ws = self.ws
        if ws is None or not ws.open:
            return  # the close is under way: the app hears it from receive()
        ws.send_message(data)
        self.flush()

    def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws is None or not ws.open:
            return
        ws.send_close(code, reason)
        self.flush()
        if not ws.ended:
            timeout = self.state.config.ws_close_timeout
            self.close_timer = self.loop.call_later(timeout, self._close_timed_out)

    def abort(self) -> None:
        self.outcome = "app error"
        self.give_up()

    def taken(self) -> None:
        self.queued -= 1
        if self.input_paused and self.queued <= self.state.config.ws_max_queue // 2:
            self.input_paused = False
            self.resume_input()

    # -- output, time and the end ----------------------------------------------------------------

    def flush(self) -> None:
        ws = self.ws
        if ws is None:
            return
        data = ws.data_to_send()
        if data:
            self.stream.sent += len(data)  # frames, as written (compressed, with their heads)
            self.write(data)
        if ws.ended:
            self.end()

    def _close_timed_out(self) -> None:
        ws = self.ws
        if ws is not None and not ws.ended:
            self.give_up()

    def stop_timers(self) -> None:
        for timer in (self.close_timer, self.ping_timer):
            if timer is not None:
                timer.cancel()

    def shutdown(self) -> None:
        """Server shutdown: close with 1001 (going away) and let the client answer."""
        if self.ws is None:
            self.give_up()
        else:
            self.close(_GOING_AWAY, "server shutting down")

    def _keep_alive(self) -> None:
        """Ping every --ws-ping-interval; a pong later than --ws-ping-timeout closes (1011)."""
        ws, config = self.ws, self.state.config
        if ws is None or not ws.open or config.ws_ping_interval is None:
            return
        now = self.loop.time()
        timeout = config.ws_ping_timeout
        if self.ping_sent is not None:
            if timeout is not None and now - self.ping_sent >= timeout:
                ws.fail(_KEEPALIVE_TIMEOUT, "keepalive ping timeout")
                self.stream.closed(_KEEPALIVE_TIMEOUT, "keepalive ping timeout")
                self.flush()
                return
        else:
            ws.send_ping(b"%08x" % int(now * 1000 % 2**32))
            self.ping_sent = now
            self.flush()
        delay = config.ws_ping_interval
        if self.ping_sent is not None and timeout is not None:
            delay = min(delay, self.ping_sent + timeout - now)
        self.ping_timer = self.loop.call_later(max(delay, 0.01), self._keep_alive)


class _Carrier(GatedProtocol):
    """The connection's asyncio protocol from the handshake on, handing everything to its
    session. (A class of its own because mypyc compiles no class with two bases.)"""

    def __init__(self, session: H1WebSocket) -> None:
        super().__init__()
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session.receive(data)

    def eof_received(self) -> bool | None:
        self.session.receive_eof()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)


class H1WebSocket(WSSession):
    """A WebSocket over HTTP/1.1: it owns the connection from the handshake on."""

    protocol = "HTTP/1.1"  # what the metrics call its connection

    def __init__(
        self,
        state: ServerState,
        info: ConnectionInfo,
        core: H1Connection,
        event: RequestReceived,
        offer: Offer,
    ) -> None:
        WSSession.__init__(self, state, websocket_scope(info, state, event, offer), offer)
        self.carrier = _Carrier(self)
        self.write_gate = self.carrier.write_gate  # the transport's push-back
        self.core = core  # the HTTP/1.1 core, for the 101 or the denial
        self.stream_id = self.stream.stream_id = event.stream_id
        self.transport: asyncio.Transport | None = None
        self.output: list[bytes] = []  # written once per event-loop turn (one syscall)
        self.output_size = 0
        self.output_pending = False
        self.ending = False
        self.logged = False

    def start(self, transport: asyncio.Transport) -> None:
        """Take over the connection and run the app on the handshake."""
        self.transport = transport
        transport.set_protocol(self.carrier)
        self.state.connections.add(self)
        task = asyncio.ensure_future(self.stream.run(self.state.app))
        if not task.done():
            self.stream.task = task
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.stop_timers()
        self.stream.closed(ABNORMAL, "")  # unless a close frame or a failure came first
        self.stream.cancel_later(self.state.config.cancel_grace)
        self.write_gate.close()
        ws = self.ws
        clean = ws is not None and ws.close_received
        self._log("closed" if clean else "client disconnected")

    # -- the carrier ---------------------------------------------------------------------------

    def send_acceptance(self, fields: Headers) -> None:
        self.core.switch_protocols(self.stream_id, b"websocket", fields)
        self.write(self.core.data_to_send())
        self.early = self.core.trailing_data() + self.early

    def deny(self, status: int, headers: Headers) -> None:
        # The handshake is refused: the connection ends after this response.
        self.core.send_head(self.stream_id, status, [*headers, (b"connection", b"close")])
        self.write(self.core.data_to_send())

    def send_denial_body(self, body: bytes, *, end: bool) -> None:
        self.core.send_data(self.stream_id, body, end)
        self.write(self.core.data_to_send())
        if end:
            self.end()

    def write(self, data: bytes) -> None:
        """Queue ``data``; what an event-loop turn queued goes out in one write (an app that
        echoes a batch of messages costs one syscall, not one each), or at once above
        _EAGER_FLUSH, so the transport can push back before more piles up."""
        if not data or self.ending:
            return
        self.output.append(data)
        self.output_size += len(data)
        if self.output_size >= _EAGER_FLUSH:
            self._write_out()
        elif not self.output_pending:
            self.output_pending = True
            self.loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self.output_pending = False
        if not self.output:
            return
        data = b"".join(self.output) if len(self.output) > 1 else self.output[0]
        self.output.clear()
        self.output_size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def end(self) -> None:
        if self.transport is not None and not self.ending:
            self._write_out()
            self.ending = True
            close_lingering(self.transport, self.loop)

    def pause_input(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_input(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def writable(self) -> Awaitable[None]:
        return self.write_gate.wait() if self.write_gate.paused else READY

    def _log(self, outcome: str) -> None:
        ended = self.state.ended
        if self.logged or ended is None:
            return
        self.logged = True
        ended(self.stream, self.outcome or outcome)


class H2WebSocket(WSSession):
    """A WebSocket over one HTTP/2 stream (RFC 8441): an exchange of its ``H2Driver``."""

    def __init__(
        self, driver: H2Driver, info: ConnectionInfo, event: RequestReceived, offer: Offer
    ) -> None:
        state = driver.state
        super().__init__(state, websocket_scope(info, state, event, offer), offer)
        self.driver = driver
        self.stream_id = self.stream.stream_id = event.stream_id
        self.uncredited = 0  # DATA received while input is paused, credited on resume
        self.finished = False  # our END_STREAM (or RST_STREAM) is out

    # -- what the driver needs of an exchange (transport/driver.py: Exchange) --------------------

    @property
    def scope(self) -> Scope:
        return self.stream.scope

    @property
    def status(self) -> int:
        return self.stream.status

    @status.setter
    def status(self, value: int) -> None:
        self.stream.status = value

    @property
    def sent(self) -> int:
        return self.stream.sent

    @sent.setter
    def sent(self, value: int) -> None:
        self.stream.sent = value

    @property
    def started(self) -> float:
        return self.stream.started

    @property
    def response_headers(self) -> Headers:
        return self.stream.response_headers

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self.stream.task

    @task.setter
    def task(self, value: asyncio.Task[None] | None) -> None:
        self.stream.task = value

    def run(self, app: ASGIApp) -> Coroutine[Any, Any, None]:
        return self.stream.run(app)

    def feed_body(self, data: bytes) -> None:
        if self.input_paused:
            self.uncredited += len(data)
        else:
            self.driver.consumed(self.stream_id, len(data))
        self.receive(data)

    def feed_trailers(self, headers: Headers) -> None:
        pass  # a WebSocket has none (RFC 8441 §5: DATA only); END_STREAM follows

    def end_body(self) -> None:
        self.receive_eof()

    def disconnect(self) -> None:
        """RST_STREAM, or the connection is gone: a 1006 for the app."""
        self.finished = True
        self.stop_timers()
        self.stream.closed(ABNORMAL, "")

    def cancel_later(self, grace: float) -> None:
        self.stream.cancel_later(grace)

    # -- the carrier ---------------------------------------------------------------------------

    def send_acceptance(self, fields: Headers) -> None:
        self.stream.status = 200  # RFC 8441 §5: a 2xx accepts
        self.driver.send_head(self.stream_id, 200, fields, end_stream=False, trailers=False)

    def deny(self, status: int, headers: Headers) -> None:
        self.driver.send_head(self.stream_id, status, headers, end_stream=False, trailers=False)

    def send_denial_body(self, body: bytes, *, end: bool) -> None:
        if end:
            self.finished = True
        self.driver.send_data(self.stream_id, body, end_stream=end)

    def write(self, data: bytes) -> None:
        if not self.finished:
            self.driver.send_data(self.stream_id, data, end_stream=False)

    def end(self) -> None:
        """RFC 8441 §5: an orderly close is END_STREAM (the peer sends its own)."""
        if not self.finished:
            self.finished = True
            self.stop_timers()
            if not self.outcome:
                clean = self.ws is not None and self.ws.close_received
                self.outcome = "closed" if clean else "client disconnected"
            self.driver.send_data(self.stream_id, b"", end_stream=True)

    def give_up(self) -> None:
        """RFC 8441 §5: an abrupt end is RST_STREAM with CANCEL."""
        if not self.finished:
            self.finished = True
            self.stop_timers()
            self.stream.closed(ABNORMAL, "")
            with contextlib.suppress(LocalProtocolError):
                self.driver.reset(self.stream_id, ErrorCode.CANCEL)

    def pause_input(self) -> None:
        pass  # feed_body stops crediting the stream's window: the client's sender stalls

    def resume_input(self) -> None:
        credit, self.uncredited = self.uncredited, 0
        if credit and not self.finished:
            self.driver.consumed(self.stream_id, credit)

    def writable(self) -> Awaitable[None]:
        return self.driver.writable(self.stream_id)
