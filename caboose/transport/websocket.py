"""WebSocket over HTTP/1.1 (RFC 6455): the session behind an accepted ``Upgrade: websocket``.

The negotiator hands the connection to a ``WSSession`` as soon as a valid opening handshake
arrives. The app answers it through ``WSStream``: an accept becomes the 101 (written by the
HTTP/1.1 core), a close or a ``websocket.http.response`` an ordinary HTTP response. From the
101 on, frames go through the sans-I/O protocol of the ``websockets`` library, which answers
pings and echoes the close; this module assembles messages, checks UTF-8 as text arrives
(1007), and turns the socket's ends into the app's ``websocket.disconnect``.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Awaitable
from typing import Any

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol, Side, State

from caboose.asgi.websocket import ABNORMAL, WSStream
from caboose.core.events import Headers, RequestReceived
from caboose.core.h1 import H1Connection
from caboose.core.ws_handshake import Offer, acceptance
from caboose.transport.connection import ConnectionInfo, log_access
from caboose.transport.flow import READY, GatedProtocol, close_lingering
from caboose.transport.state import ServerState

logger = logging.getLogger("caboose.error")

_GOING_AWAY = 1001  # RFC 6455 §7.4.1: the server is going down
_INVALID_TEXT = 1007
_PRE_ACCEPT_LIMIT = 64 * 1024  # bytes a client may send before our 101 (it should send none)


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


def websocket_scope(info: ConnectionInfo, event: RequestReceived, offer: Offer) -> dict[str, Any]:
    """The ASGI ``websocket`` scope: the request's, as a socket (ASGI spec 2.4)."""
    scope = info.scopes.http(event, {"websocket.http.response": {}})
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if info.scheme == "https" else "ws"
    scope["subprotocols"] = offer.subprotocols
    return scope


class WSSession(GatedProtocol):
    """One WebSocket over HTTP/1.1, from the opening handshake to the closed connection."""

    def __init__(
        self,
        state: ServerState,
        info: ConnectionInfo,
        core: H1Connection,
        event: RequestReceived,
        offer: Offer,
    ) -> None:
        super().__init__()
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.core = core  # the HTTP/1.1 core, for the 101 or the denial
        self.stream_id = event.stream_id
        self.offer = offer
        self.stream = WSStream(self, websocket_scope(info, event, offer))
        self.transport: asyncio.Transport | None = None
        self.ws: Protocol | None = None  # from the 101 on
        self.early = b""  # bytes before the 101
        self.parts: list[bytes] = []  # the fragments of the message being received
        self.text: codecs.IncrementalDecoder | None = None  # set while a text message arrives
        self.queued = 0  # messages fed to the app and not yet taken
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
        self.ping_sent: float | None = None  # when the unanswered keep-alive ping went out
        self.outcome = ""
        self.logged = False
        self.ending = False

    def start(self, transport: asyncio.Transport) -> None:
        """Take over the connection and run the app on the handshake."""
        self.transport = transport
        transport.set_protocol(self)
        self.state.connections.add(self)
        task = asyncio.ensure_future(self.stream.run(self.state.app))
        if not task.done():
            self.stream.task = task
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            self.early += data  # a client must wait for the 101 (RFC 6455 §4.1); bounded
            if len(self.early) > _PRE_ACCEPT_LIMIT and self.transport is not None:
                self.transport.close()
            return
        ws.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        for timer in (self.close_timer, self.ping_timer):
            if timer is not None:
                timer.cancel()
        ws = self.ws
        code = ws.close_code if ws is not None and ws.close_code is not None else ABNORMAL
        reason = ws.close_reason or "" if ws is not None else ""
        self.stream.closed(code, reason)
        self.stream.cancel_later(self.state.config.cancel_grace)
        self.write_gate.close()
        self._log("closed" if code != ABNORMAL else "client disconnected")

    # -- frames from the client ----------------------------------------------------------------

    def _process(self) -> None:
        ws = self.ws
        assert ws is not None
        for frame in ws.events_received():
            if isinstance(frame, Frame):
                self._on_frame(frame)
        self._flush()
        if ws.state is State.CLOSED or ws.close_expected():
            self._closing_handshake_done()

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT:
            self.text = codecs.getincrementaldecoder("utf-8")()
        elif opcode is Opcode.BINARY:
            self.text = None
        elif opcode is not Opcode.CONT:
            if opcode is Opcode.PONG:
                self.ping_sent = None
            elif opcode is Opcode.CLOSE:
                received = self.ws.close_rcvd if self.ws is not None else None
                if received is None:  # RFC 6455 §7.1.5: no status code in it
                    self.stream.closed(1005, "")
                else:
                    self.stream.closed(received.code, received.reason)
            return  # PING and PONG: the protocol answered
        if self.text is not None:
            try:
                self.text.decode(frame.data, final=frame.fin)  # RFC 6455 §8.1, as it arrives
            except UnicodeDecodeError:
                self._fail(_INVALID_TEXT, "invalid UTF-8 in a text message")
                return
        self.parts.append(bytes(frame.data))
        if frame.fin:
            data = b"".join(self.parts)
            self.parts = []
            self.stream.feed_message(data.decode() if self.text is not None else data)
            self.queued += 1
            if self.queued >= self.state.config.ws_max_queue and self.transport is not None:
                self.transport.pause_reading()  # the app is behind: the client waits

    def _fail(self, code: int, reason: str) -> None:
        assert self.ws is not None
        self.ws.fail(code, reason)
        self.stream.closed(code, reason)

    def _closing_handshake_done(self) -> None:
        """RFC 6455 §7.1.1: the server closes the TCP connection first."""
        self._end()

    # -- WebSocketSink: what WSStream calls ----------------------------------------------------

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        config = self.state.config
        offered, extension = None, None
        if config.ws_per_message_deflate:
            offered, extension = negotiate_deflate(self.offer.extensions)
        fields = acceptance(self.offer, subprotocol, offered, headers)
        self.core.switch_protocols(self.stream_id, b"websocket", fields)
        self.ws = Protocol(Side.SERVER, state=State.OPEN, max_size=config.ws_max_size)
        if extension is not None:
            self.ws.extensions = [extension]
        self._write(self.core.data_to_send())
        if config.ws_ping_interval is not None:
            self.ping_timer = self.loop.call_later(config.ws_ping_interval, self._keep_alive)
        early = self.core.trailing_data() + self.early
        self.early = b""
        if early:
            self.data_received(early)

    def deny(self, status: int, headers: Headers) -> None:
        # The handshake is refused: the connection ends after this response.
        self.core.send_head(self.stream_id, status, [*headers, (b"connection", b"close")])
        self._write(self.core.data_to_send())

    def deny_body(self, body: bytes, *, more: bool) -> None:
        self.core.send_data(self.stream_id, body, not more)
        self._write(self.core.data_to_send())
        if not more:
            self.outcome = "denied"
            self._end()

    def send_message(self, data: bytes | str) -> None:
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return  # the close is under way: the app hears it from receive()
        if isinstance(data, str):
            ws.send_text(data.encode())
        else:
            ws.send_binary(data)
        self._flush()

    def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return
        ws.send_close(code, reason)
        self._flush()
        timeout = self.state.config.ws_close_timeout
        self.close_timer = self.loop.call_later(timeout, self._end)

    def abort(self) -> None:
        self.outcome = "app error"
        self._end()

    def writable(self) -> Awaitable[None]:
        return self.write_gate.wait() if self.write_gate.paused else READY

    def taken(self) -> None:
        self.queued -= 1
        if self.queued == self.state.config.ws_max_queue // 2 and self.transport is not None:
            self.transport.resume_reading()

    # -- output and the end --------------------------------------------------------------------

    def _flush(self) -> None:
        ws = self.ws
        if ws is None:
            return
        for data in ws.data_to_send():
            if data:
                self._write(data)
            else:
                self._closing_handshake_done()  # the protocol says: close now

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _end(self) -> None:
        if self.transport is not None and not self.ending:
            self.ending = True
            close_lingering(self.transport, self.loop)

    def shutdown(self) -> None:
        """Server shutdown: close with 1001 (going away) and let the client answer."""
        if self.ws is None:
            self._end()
        else:
            self.close(_GOING_AWAY, "server shutting down")

    def _keep_alive(self) -> None:
        """Ping every --ws-ping-interval; a pong later than --ws-ping-timeout closes (1011)."""
        ws, config = self.ws, self.state.config
        if ws is None or ws.state is not State.OPEN or config.ws_ping_interval is None:
            return
        now = self.loop.time()
        timeout = config.ws_ping_timeout
        if self.ping_sent is not None:
            if timeout is not None and now - self.ping_sent >= timeout:
                self._fail(1011, "keepalive ping timeout")
                self._flush()
                self._end()
                return
        else:
            ws.send_ping(b"%08x" % int(now * 1000 % 2**32))
            self.ping_sent = now
            self._flush()
        delay = config.ws_ping_interval
        if self.ping_sent is not None and timeout is not None:
            delay = min(delay, self.ping_sent + timeout - now)
        self.ping_timer = self.loop.call_later(max(delay, 0.01), self._keep_alive)

    def _log(self, outcome: str) -> None:
        if self.logged or not self.state.config.access_log:
            return
        self.logged = True
        log_access(self.stream, self.outcome or outcome)
