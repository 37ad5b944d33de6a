"""HTTPStream: the one ASGI ``http`` state machine, shared by HTTP/1.1 and HTTP/2.

It speaks to the protocol through a ``StreamSink`` (send head / data / trailers / reset) and
never sees frames or chunk framing. Response states (the ``http.response.trailers`` extension):

    START --start--> HEAD --body(more)--> BODY --body(final)--> DONE
                       |                   |   \\--(trailers: True) final body--> TRAILERS
                       +---trailers msg----+-------------------------------------> TRAILERS
    TRAILERS --trailers(more_trailers: False)--> DONE
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from enum import Enum
from time import monotonic
from typing import Any, Protocol

from caboose.asgi.files import file_chunks, file_size
from caboose.core.events import AppHeaders, Headers
from caboose.core.headers import validate_trailers
from caboose.errors import ClientDisconnected

logger = logging.getLogger("caboose.error")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DISCONNECT: Message = {"type": "http.disconnect"}


class StreamSink(Protocol):
    """What a protocol offers one stream; every method names the stream it acts on.

    Writes return nothing and can drop nothing: the protocol takes every write whole and
    sends it as soon as flow control and the socket allow, in order, until the stream ends
    or is reset. Backpressure is separate: ``writable`` is what a sender awaits before
    producing more.
    """

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None: ...

    def send_head(
        self, stream_id: int, status: int, headers: AppHeaders, *, end_stream: bool, trailers: bool
    ) -> None:
        """Start the response (``trailers``: a trailer section will follow). The protocol
        validates every field it writes."""

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Body bytes, held by the protocol until they can go."""

    def send_response(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        """A whole response in one call: head, all of the body, end (the common case)."""

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        """The trailer section, after whatever body is still held; it ends the response."""

    def writable(self, stream_id: int) -> Awaitable[None]:
        """Done once this stream has nothing held back and the socket takes more (or the
        stream is gone): awaited after each piece of a streamed body."""

    def consumed(self, stream_id: int, size: int) -> None: ...

    def reset(self, stream_id: int) -> None: ...


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve the future a receive() sleeps on, if there is one and it still waits."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class ResponseState(Enum):
    START = "start"  # nothing sent yet
    HEAD = "head"  # http.response.start received, held until the first body
    BODY = "body"
    TRAILERS = "trailers"
    DONE = "done"


def _fields(raw: Iterable[Any]) -> Headers:
    return [(bytes(name), bytes(value)) for name, value in raw]


class HTTPStream:
    """One request/response exchange as seen by an ASGI application."""

    __slots__ = (
        "_body",
        "_body_complete",
        "_disconnected",
        "_expect_continue",
        "_head",
        "_request_done",
        "_request_trailers",
        "_sink",
        "_trailers",
        "_trailers_allowed",
        "_trailers_expected",
        "_waiter",
        "outcome",
        "response_headers",
        "scope",
        "sent",
        "started",
        "state",
        "status",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        sink: StreamSink,
        stream_id: int,
        scope: Scope,
        *,
        body_complete: bool,
        accepts_trailers: bool,
        expect_continue: bool,
    ) -> None:
        self._sink = sink
        self.stream_id = stream_id
        self.scope = scope
        self.state = ResponseState.START
        self.status = 0
        self._body: list[bytes] = []
        self._body_complete = body_complete
        self._request_trailers: Headers | None = None
        self._request_done = False  # the final http.request message was delivered
        self._disconnected = False
        self._expect_continue = expect_continue and not body_complete
        self._waiter: asyncio.Future[None] | None = None
        # RFC 9110 §6.5: trailers only reach a client that said TE: trailers; never for HEAD.
        self._trailers_allowed = accepts_trailers and scope["method"] != "HEAD"
        self._trailers_expected = False
        self._head: tuple[int, AppHeaders] | None = None
        self._trailers: Headers = []
        # The task running the app, while it may still need cancelling (set by the driver).
        self.task: asyncio.Task[None] | None = None
        # How the exchange ended when it did not simply complete (the access log says so).
        self.outcome = ""
        # What the access log and the metrics read: one clock reading when the request
        # arrived, the body bytes handed to the protocol, the fields the app answered with.
        self.started = monotonic()
        self.sent = 0
        self.response_headers: Iterable[Any] = ()

    # -- the protocol feeds the request in --------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self._body.append(data)
        self._wake()

    def feed_trailers(self, headers: Headers) -> None:
        self._request_trailers = headers

    def end_body(self) -> None:
        self._body_complete = True
        self._wake()

    def disconnect(self) -> None:
        """The peer went away or reset the stream: receive() says so, send() goes quiet."""
        self._disconnected = True
        self._wake()

    def cancel_later(self, grace: float) -> None:
        """Cancel an app that ignores the disconnect once ``grace`` seconds have passed.

        Only while the response is unfinished: work an app does after its response (such
        as Starlette's background tasks) is not the client's to cut short.
        """
        task = self.task
        if task is not None and not task.done() and self.state is not ResponseState.DONE:
            asyncio.get_running_loop().call_later(grace, task.cancel)

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @property
    def finished(self) -> bool:
        return self.state is ResponseState.DONE

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        wake(waiter)

    # -- ASGI receive ----------------------------------------------------------------------

    async def receive(self) -> Message:
        while not self._readable():
            if self.state is ResponseState.DONE:
                return _DISCONNECT
            if self._expect_continue:
                # RFC 9110 §10.1.1: the client waits for 100 before sending the body; it is
                # owed only once the app actually asks for the body.
                self._expect_continue = False
                if self.state is ResponseState.START:
                    self._sink.send_informational(self.stream_id, 100, [])
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._disconnected:
            return _DISCONNECT
        return self._take_body()

    def _readable(self) -> bool:
        """Whether receive() has something to return now (after the body: only disconnect)."""
        if self._disconnected or self._body:
            return True
        return self._body_complete and not self._request_done

    def _take_body(self) -> Message:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        if body:
            self._sink.consumed(self.stream_id, len(body))
        more = not self._body_complete
        self._request_done = not more
        message: Message = {"type": "http.request", "body": body, "more_body": more}
        if not more and self._request_trailers is not None:
            message["trailers"] = self._request_trailers
            self._request_trailers = None
        return message

    # -- ASGI send -------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        if self._disconnected and self.state is not ResponseState.DONE:
            # (After a complete response every message is the app's mistake, RuntimeError
            # below, whether or not the client has left meanwhile.)
            raise ClientDisconnected(f"the client left stream {self.stream_id}")
        kind = message["type"]
        if kind == "http.response.body":
            self._send_body(message)
            # The sink has it all; returning once it is out is the app's backpressure.
            await self._sink.writable(self.stream_id)
        elif kind == "http.response.start":
            self._start(message)
        elif kind == "http.response.trailers":
            self._send_trailers(message)
            await self._sink.writable(self.stream_id)
        elif kind == "http.response.early_hint":
            self._early_hint(message)
        elif kind == "http.response.pathsend":
            await self._pathsend(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} (state {self.state.value})")
        if self._waiter is not None and self.state is ResponseState.DONE:
            self._wake()  # a receive() waiting for disconnect may return now

    def _start(self, message: Message) -> None:
        if self.state is not ResponseState.START:
            raise RuntimeError("http.response.start sent twice")
        status = int(message["status"])
        self.status = status
        self._trailers_expected = bool(message.get("trailers", False))
        headers = self.response_headers = message.get("headers", ())
        self._head = (status, headers)
        self.state = ResponseState.HEAD

    def _send_body(self, message: Message) -> None:
        state = self.state
        if state is not ResponseState.BODY and state is not ResponseState.HEAD:
            raise RuntimeError(self._misplaced("http.response.body"))
        body = message.get("body", b"")
        self.sent += len(body)
        more = message.get("more_body", False)
        ends_stream = not more and not self._trailers_expected
        if state is ResponseState.HEAD:
            if ends_stream:
                self._send_whole(body)
                return
            self._flush_head(end_stream=False)
        if more:
            self.state = ResponseState.BODY
        else:
            self.state = ResponseState.TRAILERS if self._trailers_expected else ResponseState.DONE
        self._sink.send_data(self.stream_id, body, end_stream=ends_stream)

    def _send_whole(self, body: bytes) -> None:
        """The first body message is also the last: the whole response goes at once."""
        assert self._head is not None
        status, headers = self._head
        if body:
            self._sink.send_response(self.stream_id, status, headers, body)
        else:
            # A headers-only response: END_STREAM rides on the head (gRPC Trailers-Only).
            self._sink.send_head(self.stream_id, status, headers, end_stream=True, trailers=False)
        self._head = None
        self.state = ResponseState.DONE  # only once the protocol accepted it: else a 500

    def _misplaced(self, kind: str) -> str:
        if self.state is ResponseState.START:
            return f"{kind} sent before http.response.start"
        if self.state is ResponseState.TRAILERS:
            return f"{kind} sent after the trailers phase began"
        return f"{kind} sent after the response completed"

    def _flush_head(self, *, end_stream: bool) -> None:
        assert self._head is not None
        status, headers = self._head
        self._head = None
        trailers = self._trailers_expected and self._trailers_allowed
        self._sink.send_head(
            self.stream_id, status, headers, end_stream=end_stream, trailers=trailers
        )

    def _early_hint(self, message: Message) -> None:
        """RFC 8297: a 103 carrying Link fields, before the final response."""
        if self.state is not ResponseState.START:
            raise RuntimeError("http.response.early_hint sent after http.response.start")
        links = [(b"link", bytes(link)) for link in message.get("links", ())]
        if links:
            self._sink.send_informational(self.stream_id, 103, links)

    async def _pathsend(self, message: Message) -> None:
        """The ASGI pathsend extension: a file is the whole body, read off the event loop."""
        if self.state is not ResponseState.HEAD:
            raise RuntimeError(self._misplaced("http.response.pathsend"))
        path = message["path"]
        size = file_size(path)
        assert self._head is not None
        status, headers = self._head
        if not any(name.lower() == b"content-length" for name, _ in headers):
            self._head = (status, [*headers, (b"content-length", b"%d" % size)])
        self._flush_head(end_stream=False)
        self.state = ResponseState.BODY
        async for chunk in file_chunks(path):
            if self._disconnected:
                return
            self.sent += len(chunk)
            self._sink.send_data(self.stream_id, chunk, end_stream=False)
            await self._sink.writable(self.stream_id)
        if self._disconnected:
            return
        self._send_body({"body": b"", "more_body": False})  # ends it, or trailers next

    def _send_trailers(self, message: Message) -> None:
        if self.state in (ResponseState.START, ResponseState.DONE):
            raise RuntimeError(self._misplaced("http.response.trailers"))
        if not self._trailers_expected:
            raise RuntimeError(
                "http.response.trailers sent, but http.response.start did not set trailers: True"
            )
        headers = _fields(message.get("headers", ()))
        validate_trailers(headers)
        if self.state is ResponseState.HEAD:
            self._flush_head(end_stream=False)
        self.state = ResponseState.TRAILERS
        self._trailers += headers
        if message.get("more_trailers", False):
            return
        self.state = ResponseState.DONE
        if self._trailers_allowed:
            self._sink.send_trailers(self.stream_id, self._trailers)
        else:  # dropped, since the client did not ask for them, but the message still ends
            self._sink.send_data(self.stream_id, b"", end_stream=True)

    # -- running the application -----------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app; turn its failures into a 500 or an aborted response, logged once."""
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._abandon()  # the sink sends the 500 as the windows allow, without us
            raise
        except ClientDisconnected:
            pass  # the app stopped at a send() after the client left: nothing to answer
        except Exception:
            logger.exception("Exception in ASGI application")
            self._abandon()
        else:
            if self.state is not ResponseState.DONE and not self._disconnected:
                logger.error("ASGI application returned without completing the response")
                self._abandon()

    def _abandon(self) -> None:
        if self._disconnected or self.state is ResponseState.DONE:
            return
        if self.state is ResponseState.START or self.state is ResponseState.HEAD:
            self._send_error(500)
            return
        self.state = ResponseState.DONE
        self.outcome = "app error"
        self._sink.reset(self.stream_id)

    def _send_error(self, status: int) -> None:
        body = b"Internal Server Error\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
        ]
        self.status = status
        self.state = ResponseState.DONE
        self.outcome = "app error"
        self.sent = len(body)
        self.response_headers = headers
        self._sink.send_response(self.stream_id, status, headers, body)
