"""WSStream: the one ASGI ``websocket`` state machine, for WebSocket over HTTP/1.1 and HTTP/2.

It speaks to the session through a ``WebSocketSink`` (accept, deny, send a message, close) and
never sees frames, handshakes or streams. States (ASGI spec 2.4, WebSocket; the
``websocket.http.response`` extension for a denial with a body):

    CONNECTING --accept--> CONNECTED --close / peer close--> CLOSED
        |   \\--close--> CLOSED (403)
        \\--http.response.start--> DENYING --http.response.body (final)--> CLOSED
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from enum import Enum
from time import monotonic
from typing import Any, Protocol

from caboose.asgi.http import ASGIApp, Message, Scope, wake
from caboose.core.events import Headers
from caboose.errors import ClientDisconnected

logger = logging.getLogger("caboose.error")

_CONNECT: Message = {"type": "websocket.connect"}
NORMAL, INTERNAL_ERROR, ABNORMAL = 1000, 1011, 1006  # RFC 6455 §7.4.1


class WebSocketSink(Protocol):
    """What a WebSocket session offers its one stream."""

    def accept(self, subprotocol: str | None, headers: Headers) -> None: ...

    def deny(self, status: int, headers: Headers) -> None:
        """Refuse the handshake with an HTTP response; its body follows with deny_body."""

    def deny_body(self, body: bytes, *, more: bool) -> None: ...

    def send_message(self, data: bytes | str) -> None: ...

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); the session finishes it."""

    def abort(self) -> None:
        """A denial's body cannot be finished: end the exchange at once."""

    def writable(self) -> Awaitable[None]: ...

    def taken(self) -> None:
        """A received message left the queue: the session may read more (--ws-max-queue)."""


# RFC 6455 §7.4: the codes an endpoint may send (1004-1006 and 1015 are reserved, never sent;
# 1012-1014 are registered with IANA), and 3000-4999 for libraries and applications.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_MAX_REASON = 123  # §5.5: a control frame carries at most 125 bytes, 2 of them the code


def _close_frame(message: Message) -> tuple[int, str]:
    """The code and reason of an app's websocket.close, checked before anything is sent."""
    code = int(message.get("code") or NORMAL)
    reason = message.get("reason") or ""
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise RuntimeError(f"websocket.close code {code} may not be sent (RFC 6455 §7.4)")
    if len(reason.encode()) > _MAX_REASON:
        raise RuntimeError(f"websocket.close reason is over {_MAX_REASON} bytes (RFC 6455 §5.5)")
    return code, reason


class WSState(Enum):
    CONNECTING = "connecting"  # the handshake awaits the app's answer
    DENYING = "denying"  # a websocket.http.response is being sent
    CONNECTED = "connected"
    CLOSED = "closed"


def _fields(raw: Iterable[Any]) -> Headers:
    return [(bytes(name), bytes(value)) for name, value in raw]


class WSStream:
    """One WebSocket as seen by an ASGI application."""

    def __init__(self, sink: WebSocketSink, scope: Scope) -> None:
        self._sink = sink
        self.scope = scope
        self.state = WSState.CONNECTING
        self.status = 101  # the access log's status: 101/200 accepted, or the denial's
        # What the access log and the metrics read (as of HTTPStream): the carrier sets the
        # stream id and counts the bytes it writes after the acceptance (frames) or of a denial.
        self.stream_id = 0
        self.started = monotonic()
        self.sent = 0
        self.response_headers: Headers = []
        self._connect_delivered = False
        self._messages: deque[bytes | str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._peer_closed: tuple[int, str] | None = None  # (code, reason) once it is over
        self.task: asyncio.Task[None] | None = None

    # -- the session feeds the socket in ----------------------------------------------------

    def feed_message(self, data: bytes | str) -> None:
        self._messages.append(data)
        self._wake()

    def closed(self, code: int = ABNORMAL, reason: str = "") -> None:
        """The socket is over: the peer closed it (with its code) or the connection was lost
        (1006, RFC 6455 §7.1.5). receive() says so after the messages still queued."""
        if self._peer_closed is None:
            self._peer_closed = (code, reason)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        wake(waiter)

    # -- ASGI receive ----------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_delivered:
            self._connect_delivered = True
            return _CONNECT
        while not self._messages and self._peer_closed is None:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._messages:
            data = self._messages.popleft()
            self._sink.taken()
            if isinstance(data, str):
                return {"type": "websocket.receive", "bytes": None, "text": data}
            return {"type": "websocket.receive", "bytes": data, "text": None}
        assert self._peer_closed is not None
        code, reason = self._peer_closed
        self.state = WSState.CLOSED
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    # -- ASGI send -------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self._peer_closed is not None or (
            self.state is WSState.CLOSED and kind == "websocket.send"
        ):
            raise ClientDisconnected(f"the WebSocket is closed ({kind} after the close)")
        state = self.state
        if kind == "websocket.send" and state is WSState.CONNECTED:
            self._sink.send_message(self._payload(message))
            await self._sink.writable()
        elif kind == "websocket.accept" and state is WSState.CONNECTING:
            self.state = WSState.CONNECTED
            headers = self.response_headers = _fields(message.get("headers", ()))
            self._sink.accept(message.get("subprotocol"), headers)
        elif kind == "websocket.close" and state is WSState.CONNECTING:
            self._deny_plain(403)  # ASGI: a close before the accept is a 403
        elif kind == "websocket.close" and state is WSState.CONNECTED:
            code, reason = _close_frame(message)
            self.state = WSState.CLOSED
            self._sink.close(code, reason)
        elif kind == "websocket.http.response.start" and state is WSState.CONNECTING:
            self.state = WSState.DENYING
            self.status = int(message["status"])
            self.response_headers = _fields(message.get("headers", ()))
            self._sink.deny(self.status, self.response_headers)
        elif kind == "websocket.http.response.body" and state is WSState.DENYING:
            more = bool(message.get("more_body", False))
            if not more:
                self.state = WSState.CLOSED
            self._sink.deny_body(bytes(message.get("body", b"")), more=more)
            await self._sink.writable()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} (state {state.value})")

    @staticmethod
    def _payload(message: Message) -> bytes | str:
        data, text = message.get("bytes"), message.get("text")
        if (data is None) == (text is None):
            raise RuntimeError("websocket.send needs exactly one of 'bytes' and 'text'")
        return bytes(data) if data is not None else str(text)

    def _deny_plain(self, status: int) -> None:
        body = b"" if status == 403 else b"Internal Server Error\n"
        self.state = WSState.CLOSED
        self.status = status
        headers = [(b"content-type", b"text/plain; charset=utf-8")] if body else []
        self.response_headers = [*headers, (b"content-length", b"%d" % len(body))]
        self._sink.deny(status, self.response_headers)
        self._sink.deny_body(body, more=False)

    # -- running the application -----------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app; a failure before the accept is a 500, after it a close 1011."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._abandon(failed=True)
            raise
        except ClientDisconnected:
            pass  # the app stopped at a send() after the close: nothing more to say
        except Exception:
            logger.exception("Exception in ASGI application")
            self._abandon(failed=True)
        else:
            if self.state is WSState.CONNECTING:
                logger.error("ASGI application returned without accepting or closing")
            self._abandon(failed=False)

    def _abandon(self, *, failed: bool) -> None:
        state = self.state
        if state is WSState.CONNECTING:
            self._deny_plain(500)
        elif state is WSState.CONNECTED and self._peer_closed is None:
            self.state = WSState.CLOSED
            self._sink.close(INTERNAL_ERROR if failed else NORMAL, "")
        elif state is WSState.DENYING:
            self.state = WSState.CLOSED
            self._sink.abort()

    def cancel_later(self, grace: float) -> None:
        """Cancel an app that ignores the disconnect once ``grace`` seconds have passed."""
        task = self.task
        if task is not None and not task.done():
            asyncio.get_running_loop().call_later(grace, task.cancel)
