"""HTTP/1.1 client connection: requests out, llhttp's response parser (httptools) in, events.

The twin of ``core/h1.py`` in the other role. Requests may be pipelined; responses arrive in
request order (RFC 9112 §9.3.2), and each exchange gets stream id 1, 2, 3, ... as on the
server side. The events are the server role's vocabulary seen from the other end:
``InformationalResponseReceived`` (1xx), ``ResponseReceived``, ``DataReceived`` with
``end_stream`` on the last piece, ``TrailersReceived``, ``StreamEnded``; a 101 switches the
connection to another protocol (``SWITCHED``, with ``trailing_data()``).
"""

from __future__ import annotations

from collections import deque

import httptools

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    Headers,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.h1 import ConnectionState
from caboose.core.headers import validate_field, validate_fields, validate_trailers
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

_NO_CONTENT = frozenset({204, 304})  # RFC 9110 §6.4.1: never a body


class _Exchange:
    """One request sent and the response it is owed."""

    __slots__ = ("chunked", "head", "remaining", "request_done", "stream_id")

    def __init__(self, stream_id: int, head: bool, chunked: bool, remaining: int) -> None:
        self.stream_id = stream_id
        self.head = head  # a HEAD request: the response has no body, whatever it says
        self.chunked = chunked  # the request body is chunked (so it may carry trailers)
        self.remaining = remaining  # request body bytes a Content-Length still owes; -1: none
        self.request_done = False


def _reason(exc: Exception) -> str:
    """Why parsing failed: our own check's message (httptools wraps it), or llhttp's."""
    cause = exc.__context__
    if isinstance(cause, RemoteProtocolError):
        return str(cause)
    return str(exc).strip() or "malformed response"


class _HeadOnly(Exception):
    """Raised from on_headers_complete: a response to HEAD ends with its head."""


class H1ClientConnection:
    """Client role of HTTP/1.1 (RFC 9112)."""

    def __init__(self, *, max_header_size: int = 65536, max_headers: int = 100) -> None:
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.state = ConnectionState.OPEN
        self.output: list[bytes] = []
        self._exchanges: deque[_Exchange] = deque()  # sent, response not yet complete
        self._sending: _Exchange | None = None  # whose request body is being written
        self._next_stream_id = 1
        self._events: list[Event] = []
        self._held = b""  # bytes after a 101 (the new protocol's), or before a HEAD's head
        self._new_parser()

    def _new_parser(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: Headers = []
        self._in_head = True
        self._head_size = 0
        self._head_bytes = 0  # bytes received while a head is incomplete
        self._framed = False  # Content-Length or chunked: the body's end is known
        self._last_data: DataReceived | None = None

    # -- sending ---------------------------------------------------------------------------

    def send_request(
        self, method: bytes, target: bytes, headers: Headers, *, end_stream: bool = False
    ) -> int:
        """Write a request head; returns its stream id. Without a Content-Length, a request
        with a body goes chunked (which may end with trailers)."""
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError("the connection is closing")
        if self._sending is not None:
            raise LocalProtocolError("the previous request's body is not finished")
        validate_field(method, b"")
        if not target or b" " in target or b"\r" in target or b"\n" in target:
            raise LocalProtocolError(f"invalid request-target {target!r}")
        validate_fields(headers)
        names = {name.lower() for name, _ in headers}
        if b"host" not in names:
            raise LocalProtocolError("an HTTP/1.1 request needs Host (RFC 9112 §3.2)")
        if b"transfer-encoding" in names:
            raise LocalProtocolError("the framing is the connection's to choose")
        lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
        lines += [b"%s: %s\r\n" % field for field in headers]
        remaining = -1
        chunked = False
        if b"content-length" in names:
            value = next(v for n, v in headers if n.lower() == b"content-length")
            if not value.strip().isdigit():
                raise LocalProtocolError(f"invalid content-length {value!r}")
            remaining = int(value)
        elif not end_stream:
            chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.output.append(b"".join(lines))
        exchange = _Exchange(self._next_stream_id, method == b"HEAD", chunked, remaining)
        self._next_stream_id += 1
        self._exchanges.append(exchange)
        if end_stream:
            self._end_request(exchange)
        else:
            self._sending = exchange
        return exchange.stream_id

    def _body_of(self, stream_id: int) -> _Exchange:
        exchange = self._sending
        if exchange is None or exchange.stream_id != stream_id:
            raise LocalProtocolError(f"stream {stream_id} has no request body in progress")
        return exchange

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        exchange = self._body_of(stream_id)
        if exchange.remaining >= 0:
            exchange.remaining -= len(data)
            if exchange.remaining < 0:
                raise LocalProtocolError("request body longer than its Content-Length")
        if data:
            self.output.append(b"%x\r\n%s\r\n" % (len(data), data) if exchange.chunked else data)
        if end_stream:
            if exchange.chunked:
                self.output.append(b"0\r\n\r\n")
            self._end_request(exchange)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """The request's trailer section (RFC 9112 §7.1.2); only a chunked body has one."""
        exchange = self._body_of(stream_id)
        if not exchange.chunked:
            raise LocalProtocolError("trailers need a chunked request body (no Content-Length)")
        validate_trailers(headers)
        fields = b"".join(b"%s: %s\r\n" % field for field in headers)
        self.output.append(b"0\r\n" + fields + b"\r\n")
        self._end_request(exchange)

    def _end_request(self, exchange: _Exchange) -> None:
        if exchange.remaining > 0:
            raise LocalProtocolError("request body shorter than its Content-Length")
        exchange.request_done = True
        self._sending = None

    def data_to_send(self) -> bytes:
        out = self.output
        data = b"".join(out)
        out.clear()
        return data

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; ``b""`` means the server closed its side."""
        if self.state is ConnectionState.SWITCHED:
            self._held += data
            return []
        if self.state is ConnectionState.DONE:
            return []
        if not data:
            return self._peer_closed()
        data = self._held + data
        self._held = b""
        while data:
            if self._exchanges and self._exchanges[0].head and self._in_head:
                data = self._feed_head_only(data)
            else:
                data = self._feed(data)
        events, self._events = self._events, []
        return events

    def _feed(self, data: bytes) -> bytes:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            return self._switched(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self._fail(_reason(exc))
            return b""
        if self._in_head:  # llhttp reports a field only once it is whole: bound the wait
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_size:
                self._fail("response header section too large")
        return b""

    def _feed_head_only(self, data: bytes) -> bytes:
        """A response to HEAD has no body whatever its fields say (RFC 9110 §9.3.2), which
        llhttp cannot know: hand it the head alone, then a fresh parser for what follows."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > self.max_header_size:
                self._fail("response header section too large")
            self._held = data
            return b""
        head, rest = data[: end + 4], data[end + 4 :]
        try:
            self._parser.feed_data(head)
        except _HeadOnly:
            self._new_parser()
        except httptools.HttpParserError as exc:
            if not isinstance(exc.__context__, _HeadOnly):
                self._fail(_reason(exc))
                return b""
            self._new_parser()
        return rest

    def _switched(self, rest: bytes) -> bytes:
        """A 101 (RFC 9110 §15.2.2): from its end on, the bytes are the new protocol's."""
        if not self._in_head:
            self._complete()
        self.state = ConnectionState.SWITCHED
        self._held = rest
        return b""

    def trailing_data(self) -> bytes:
        """After a 101: the bytes received beyond its head, the new protocol's."""
        held, self._held = self._held, b""
        return held

    def _peer_closed(self) -> list[Event]:
        events, self._events = self._events, []
        exchange = self._exchanges[0] if self._exchanges else None
        if exchange is not None and not self._in_head and not self._framed:
            self._complete()  # a close-delimited body ends with the connection (RFC 9112 §6.3)
            events += self._events
            self._events = []
            exchange = self._exchanges[0] if self._exchanges else None
        self.state = ConnectionState.DONE
        reason = "peer closed mid-response" if exchange is not None else "peer closed"
        return [*events, ConnectionTerminated(ErrorCode.NO_ERROR, reason)]

    def _fail(self, reason: str) -> None:
        self.state = ConnectionState.DONE
        self._events.append(ConnectionTerminated(ErrorCode.PROTOCOL_ERROR, reason))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []
        self._in_head = True
        self._head_size = 0
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= self.max_headers:
            raise RemoteProtocolError("too many header fields")
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_header_size:
            raise RemoteProtocolError("response header section too large")
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self._framed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if not self._exchanges:
            raise RemoteProtocolError("a response nobody asked for")
        exchange = self._exchanges[0]
        headers, self._headers = self._headers, []
        if 100 <= status < 200 and status != 101:
            self._events.append(InformationalResponseReceived(exchange.stream_id, status, headers))
            return
        self._in_head = False
        self._head_bytes = 0
        bodiless = exchange.head or status in _NO_CONTENT or status == 101
        version = self._parser.get_http_version()
        self._events.append(
            ResponseReceived(exchange.stream_id, status, headers, version, bodiless)
        )
        if exchange.head and status != 101:
            self._complete()
            raise _HeadOnly

    def on_body(self, body: bytes) -> None:
        stream_id = self._exchanges[0].stream_id
        data = self._last_data = DataReceived(stream_id, body, len(body))
        self._events.append(data)

    def on_message_complete(self) -> None:
        if self._in_head:
            return  # a 1xx
        self._complete()

    def _complete(self) -> None:
        exchange = self._exchanges.popleft()
        last = self._last_data
        trailers = self._headers if not self._in_head else []
        if trailers:
            self._events.append(TrailersReceived(exchange.stream_id, trailers))
        elif last is not None and self._events and self._events[-1] is last:
            last.end_stream = True
        self._last_data = None
        self._headers = []
        self._in_head = True
        self._events.append(StreamEnded(exchange.stream_id))
