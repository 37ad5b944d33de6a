"""HTTP/1.1 server connection: the llhttp parser (httptools) wrapped as bytes in, events out."""

from __future__ import annotations

import re
from collections import deque
from enum import Enum
from http import HTTPStatus

import httptools

from caboose.core.events import (
    AppHeaders,
    ConnectionTerminated,
    DataReceived,
    Event,
    Headers,
    RequestReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.headers import (
    BAD_VALUE_RE,
    TOKEN_RE,
    has_token,
    validate_field,
    validate_fields,
)
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError


class ConnectionState(Enum):
    OPEN = "open"  # reading requests
    DRAINING = "draining"  # no more requests are read; outstanding responses finish
    DONE = "done"  # nothing more will be written: close once output is flushed
    SWITCHED = "switched"  # a 101 was sent: the bytes now belong to another protocol


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii"))


_STATUS_LINES = {status.value: _status_line(status.value) for status in HTTPStatus}

# Response fields whose meaning is framing: the app's values are read, never copied blindly.
# RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [":" port], where uri-host is an IP-literal in
# brackets or a reg-name / IPv4address (unreserved, pct-encoded, sub-delims); empty is allowed.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.vV]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
# A request line's shape (RFC 9112 §3): method SP request-target SP HTTP/1.x.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ ]+ HTTP/1\.[0-9]$")
_OPENING_LIMIT = 8192  # a first line longer than this is judged by llhttp alone
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
# Request fields whose facts the core reports on RequestReceived (see on_header).
_NOTED = frozenset({b"transfer-encoding", b"host", b"te", b"expect", b"upgrade", b"connection"})
# Fields the server adds by default (H1Connection.default_headers) unless the app set them.
_DEFAULTABLE = frozenset({b"server", b"date"})

# RFC 9110 §6.4.1: these responses never carry content, whatever their headers say.
_NO_CONTENT_STATUSES = frozenset({204, 304})


class _Framing(Enum):
    NONE = "none"  # HEAD, 204, 304: the body is dropped
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # HTTP/1.0 without a length: the end of the connection ends the body


class _Cycle:
    """One request/response exchange: what the request asked for and how the response goes."""

    __slots__ = (
        "framing",
        "head",
        "http_10",
        "keep_alive",
        "remaining",
        "request_complete",
        "started",
        "stream_id",
        "trailers",
    )

    def __init__(self, stream_id: int, head: bool, http_10: bool, keep_alive: bool) -> None:
        self.stream_id = stream_id
        self.head = head
        self.http_10 = http_10
        self.keep_alive = keep_alive
        self.request_complete = False
        self.started = False
        self.framing = _Framing.CHUNKED
        self.remaining = -1  # bytes the declared Content-Length still owes; -1: undeclared
        self.trailers = False


class H1Connection:
    """Server role of HTTP/1.1 (RFC 9112).

    Requests are parsed as they arrive, also when pipelined; each request cycle gets stream id
    1, 2, 3, ... Responses must be sent in request order (RFC 9112 §9.3.2): every send command
    names a stream, and it must be the oldest cycle whose response is unfinished.
    """

    def __init__(
        self,
        *,
        max_request_line: int = 8190,
        max_header_size: int = 65536,
        max_headers: int = 100,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        # Fields added to every response head unless the app set them (Server, Date); the
        # driver refreshes Date, since the core reads no clock.
        self.default_headers: Headers = []
        self.state = ConnectionState.OPEN
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self.output: list[bytes] = []  # pending chunks: data_to_send() drains them
        self._cycles: deque[_Cycle] = deque()
        self._next_stream_id = 1
        self._deferred_error: bytes | None = None
        self._error: RemoteProtocolError | None = None
        self._valid_host: bytes | None = None  # the last Host value that passed _check_head
        # The connection's first bytes, until its first request line is complete: enough to
        # tell a malformed HTTP/1.x request (400) from something that is not HTTP/1.x at all.
        self._opening: bytes | None = b""
        self._opening_line: bytes | None = None
        # Bytes after a request that asked to upgrade, held until its response says whose
        # they are: the new protocol's (101) or the next request's (upgrade declined).
        self._held: bytearray | None = None
        self._reset_head()

    # -- receiving -------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No request is being received and no response is owed."""
        return not self._cycles and not self.in_head

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; ``b""`` means the peer closed its side."""
        if self.state is not ConnectionState.OPEN:
            return []
        if not data:
            return self._peer_closed()
        if self._held is not None:
            self._held += data
            return []
        if self._opening is not None:
            self._note_opening(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # RFC 9110 §7.8: the driver answers 101 (switch_protocols) or serves the request
            # as plain HTTP/1.1, which may ignore Upgrade; until then the rest waits.
            if self._pending is not None:
                self._flush_head(end_stream=False)
            self._parser = httptools.HttpRequestParser(self)
            events, self._events = self._events, []
            self._held = bytearray(data[exc.args[0] :])
            return events
        except httptools.HttpParserError as exc:
            if self._error is None and self._not_http1():
                self._close_unanswered()
            else:
                self._reject(self._error or RemoteProtocolError(str(exc).strip() or "bad request"))
        if self._pending is not None:
            self._flush_head(end_stream=False)
        if self.in_head and self.state is ConnectionState.OPEN:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_size:
                self._reject(RemoteProtocolError("request header too large", status=431))
        events, self._events = self._events, []
        return events

    @property
    def resumable(self) -> bool:
        """An upgrade was declined and its response is done: resume() parses what waited."""
        return self._held is not None and not self._cycles and self.state is ConnectionState.OPEN

    def resume(self) -> list[Event]:
        held, self._held = self._held, None
        return self.receive_data(bytes(held)) if held else []

    def trailing_data(self) -> bytes:
        """After switch_protocols: the bytes received beyond the upgrade request."""
        held, self._held = self._held, None
        return bytes(held or b"")

    def _note_opening(self, data: bytes) -> None:
        opening = self._opening = (self._opening or b"") + data[:_OPENING_LIMIT]
        if b"\n" in opening or len(opening) >= _OPENING_LIMIT:
            self._opening_line = opening.split(b"\n", 1)[0].rstrip(b"\r")
            self._opening = None

    def _not_http1(self) -> bool:
        """The connection opened with a whole first line that is no HTTP/1.x request line
        (``INVALID CONNECTION PREFACE`` from an HTTP/2 client, say): such a peer would read a
        400 as garbage (an HTTP/2 client as a frame header of megabytes), so it gets none."""
        line = self._opening_line
        return self._next_stream_id == 1 and line is not None and _REQUEST_LINE.match(line) is None

    def _close_unanswered(self) -> None:
        self.state = ConnectionState.DONE
        self._events.append(ConnectionTerminated(ErrorCode.PROTOCOL_ERROR, "not HTTP/1.x"))

    def _peer_closed(self) -> list[Event]:
        # Clients do not half-close HTTP/1.1 connections to await a response (RFC 9112 §9.6
        # has the close travel with the last request instead), so EOF means the client left.
        incomplete = self.in_head or any(not c.request_complete for c in self._cycles)
        self.state = ConnectionState.DONE
        self._cycles.clear()
        reason = "peer closed mid-request" if incomplete else "peer closed"
        return [ConnectionTerminated(ErrorCode.NO_ERROR, reason)]

    # -- httptools callbacks (public names because the parser looks them up) ----------------

    def _reset_head(self) -> None:
        # Whether a request head has begun but not completed (the header-read timeout).
        self.in_head = False
        self._head_bytes = 0  # bytes received while a head is incomplete (bounds buffering)
        self._head_size = 0  # bytes of the parsed head and trailers (the 431 limit)
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers = []
        self._pending: _Cycle | None = None
        self._host_count = 0  # Host fields in the head (RFC 9112 §3.2) ...
        self._host = b""  # ... and the last one's value
        self._transfer_coded = False  # the head has Transfer-Encoding
        self._accepts_trailers = False  # TE: trailers (RFC 9110 §10.1.4)
        self._expect_continue = False  # Expect: 100-continue (RFC 9110 §10.1.1)
        self._upgrade = b""  # the Upgrade field ...
        self._connection = b""  # ... which counts only when Connection names it (§7.8)
        self._last_data: DataReceived | None = None  # may yet learn that it ends the body

    def on_message_begin(self) -> None:
        self._reset_head()
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_request_line:
            self._fail(RemoteProtocolError("request-target too long", status=414))
        self._head_size += len(url)
        if self._head_size > self.max_header_size:
            self._fail(RemoteProtocolError("request header section too large", status=431))

    def on_header(self, name: bytes, value: bytes) -> None:
        fields = self._headers if self.in_head else self._trailers
        if len(fields) >= self.max_headers:
            self._fail(RemoteProtocolError("too many header fields", status=431))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_header_size:
            self._fail(RemoteProtocolError("request header section too large", status=431))
        name = name.lower()
        if name in _NOTED and self.in_head:
            self._note(name, value)
        fields.append((name, value))

    def _note(self, name: bytes, value: bytes) -> None:
        """Read the facts of a request field that RequestReceived reports or a check needs."""
        if name == b"host":
            self._host_count += 1
            self._host = value
        elif name == b"transfer-encoding":
            # llhttp lets "gzip, chunked" through; we accept no transfer coding but chunked,
            # since a coding we do not decode would leave the body unframeable (RFC 9112 §6.1).
            if value.strip().lower() != b"chunked":
                self._fail(RemoteProtocolError("unsupported transfer coding", status=501))
            self._transfer_coded = True
        elif name == b"te":
            self._accepts_trailers = self._accepts_trailers or has_token(value, b"trailers")
        elif name == b"expect":
            self._expect_continue = self._expect_continue or value.lower() == b"100-continue"
        elif name == b"upgrade":
            self._upgrade = value
        else:
            self._connection += b"," + value

    def on_headers_complete(self) -> None:
        parser = self._parser
        http_10 = parser.get_http_version() == "1.0"
        # A client repeats its Host: one checked already needs no second look.
        if http_10 or self._host_count != 1 or self._host != self._valid_host:
            self._check_head(http_10)
        method = parser.get_method()
        cycle = _Cycle(self._next_stream_id, method == b"HEAD", http_10, parser.should_keep_alive())
        self._next_stream_id += 1
        self._cycles.append(cycle)
        self._pending = cycle
        self._method = method
        self.in_head = False

    def _check_head(self, http_10: bool) -> None:
        """RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host, and a valid one. §6.1:
        Transfer-Encoding in an HTTP/1.0 request is faulty framing (400, then close)."""
        count = self._host_count
        if http_10:
            if self._transfer_coded:
                self._fail(RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request"))
        elif count != 1:
            self._fail(RemoteProtocolError("no Host" if count == 0 else "more than one Host"))
        if count:
            if _HOST.fullmatch(self._host) is None:
                self._fail(RemoteProtocolError("invalid Host"))
            self._valid_host = self._host

    def on_body(self, body: bytes) -> None:
        self._flush_head(end_stream=False)
        stream_id = self._cycles[-1].stream_id
        data = self._last_data = DataReceived(stream_id, body, len(body))
        self._events.append(data)

    def on_message_complete(self) -> None:
        cycle = self._cycles[-1]
        if not self._flush_head(end_stream=True):
            cycle.request_complete = True
            last = self._last_data
            if self._trailers:
                self._events.append(TrailersReceived(cycle.stream_id, self._trailers))
                self._trailers = []
            elif last is not None and self._events and self._events[-1] is last:
                last.end_stream = True  # as HTTP/2's END_STREAM rides on the last DATA
        self._last_data = None
        self._events.append(StreamEnded(cycle.stream_id))

    def _flush_head(self, *, end_stream: bool) -> bool:
        """Emit the pending request head, marked complete when no body follows it."""
        cycle = self._pending
        if cycle is None:
            return False
        self._pending = None
        cycle.request_complete = end_stream
        version = "1.0" if cycle.http_10 else "1.1"
        upgrade = self._upgrade
        if upgrade and not has_token(self._connection, b"upgrade"):
            upgrade = b""
        self._events.append(
            RequestReceived(
                cycle.stream_id,
                self._method,
                self._url,
                self._headers,
                version,
                end_stream,
                b"",
                self._host,
                b"",
                self._accepts_trailers,
                self._expect_continue,
                upgrade,
            )
        )
        return end_stream

    def _fail(self, error: RemoteProtocolError) -> None:
        """Raise from inside a parser callback, remembering why (httptools drops the cause)."""
        self._error = error
        raise error

    def _reject(self, error: RemoteProtocolError) -> None:
        """The peer sent something unparseable: answer with ``error.status`` and close."""
        self.state = ConnectionState.DRAINING
        response = self._error_response(error.status, str(error))
        broken = (
            self._cycles[-1] if self._cycles and not self._cycles[-1].request_complete else None
        )
        if broken is not None:
            self._pending = None
            self._cycles.pop()
            self._events.append(ConnectionTerminated(ErrorCode.PROTOCOL_ERROR, str(error)))
            if broken.started:
                self._cycles.clear()
                self.state = ConnectionState.DONE
                return
        if self._cycles:
            self._deferred_error = response
        else:
            self.output.append(response)
            self.state = ConnectionState.DONE

    def _error_response(self, status: int, reason: str) -> bytes:
        body = f"{HTTPStatus(status).phrase}: {reason}\n".encode("latin-1", "replace")
        head = [_STATUS_LINES[status]]
        head += [b"%s: %s\r\n" % field for field in self.default_headers]
        head.append(b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        return b"".join(head) + body

    # -- sending ---------------------------------------------------------------------------

    def _cycle_for(self, stream_id: int) -> _Cycle:
        if not self._cycles or self._cycles[0].stream_id != stream_id:
            raise LocalProtocolError(f"stream {stream_id} is not the response due next")
        return self._cycles[0]

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None:
        """A 1xx response (100 Continue, 103 Early Hints); HTTP/1.0 clients get none."""
        cycle = self._cycle_for(stream_id)
        if cycle.started:
            raise LocalProtocolError("informational response after the final response began")
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status")
        validate_fields(headers)
        if cycle.http_10:
            return
        lines = [_STATUS_LINES.get(status) or _status_line(status)]
        lines += [b"%s: %s\r\n" % field for field in headers]
        lines.append(b"\r\n")
        self.output.append(b"".join(lines))

    def switch_protocols(
        self, stream_id: int, protocol: bytes, headers: AppHeaders | None = None
    ) -> None:
        """Accept the upgrade the request asked for: 101 (RFC 9110 §15.2.2), and from here
        the connection is ``protocol``'s; trailing_data() has what came after the request."""
        cycle = self._cycle_for(stream_id)
        if cycle.started or self._held is None or len(self._cycles) != 1:
            raise LocalProtocolError("only a request that asked to upgrade can switch")
        validate_fields(headers or ())
        lines = [_STATUS_LINES[101], b"connection: upgrade\r\nupgrade: %s\r\n" % protocol]
        lines += [b"%s: %s\r\n" % field for field in headers or ()]
        lines.append(b"\r\n")
        self.output.append(b"".join(lines))
        self._cycles.clear()
        self.state = ConnectionState.SWITCHED

    def send_timeout(self) -> None:
        """RFC 9110 §15.5.9: 408 to a client too slow to send its head (slowloris), then
        close. With responses still owed (pipelining) a 408 would cut into them: those
        finish, then the connection closes."""
        if self._cycles:
            self.start_closing()
            return
        self.output.append(self._error_response(408, "the request head took too long"))
        self._cycles.clear()
        self.state = ConnectionState.DONE

    def send_head(
        self,
        stream_id: int,
        status: int,
        headers: AppHeaders,
        *,
        end_stream: bool = False,
        trailers: bool = False,
    ) -> None:
        """Start the response. ``trailers`` says a trailer section will really be written."""
        cycle = self._cycle_for(stream_id)
        lines = self._head(cycle, status, headers, 0 if end_stream else -1, trailers)
        self.output.append(b"".join(lines))
        if end_stream:
            self._end_body(cycle)

    def send_response(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        """A whole response at once: head, the complete body, end; one chunk of output."""
        cycle = self._cycle_for(stream_id)
        lines = self._head(cycle, status, headers, len(body), False)
        if cycle.framing is not _Framing.NONE:
            if cycle.remaining != len(body):
                self._abort(cycle)
                raise LocalProtocolError("response body does not match its Content-Length")
            lines.append(body)
        self.output.append(b"".join(lines))
        self._finish(cycle)

    def _head(
        self, cycle: _Cycle, status: int, headers: AppHeaders, length: int, trailers: bool
    ) -> list[bytes]:
        """The status line and fields of a response, its framing chosen (RFC 9112 §4, §6)."""
        if cycle.started:
            raise LocalProtocolError("response already started")
        if not 200 <= status <= 999:
            raise LocalProtocolError(f"invalid final status {status}")
        lines = [_STATUS_LINES.get(status) or _status_line(status)]
        close = self._copy_fields(cycle, headers, lines)
        self._choose_framing(cycle, status, lines, length, trailers)
        cycle.started = True
        # While draining, the last owed response says close, unless a queued 400 will.
        last = len(self._cycles) == 1 and self._deferred_error is None
        draining = self.state is not ConnectionState.OPEN and last
        if close or not cycle.keep_alive or draining:
            cycle.keep_alive = False
            lines.append(b"connection: close\r\n")
        elif cycle.http_10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return lines

    def _copy_fields(self, cycle: _Cycle, headers: AppHeaders, lines: list[bytes]) -> bool:
        """Validate and copy the app's fields, keeping framing fields for us to decide.

        Returns whether the app asked for ``Connection: close``.
        """
        close = False
        own: set[bytes] = set()
        cycle.remaining = -1
        for name, value in headers:
            if not TOKEN_RE.match(name) or BAD_VALUE_RE.search(value):
                validate_field(name, value)  # raises, naming what is wrong
            lname = name.lower()
            if lname in _FRAMING_FIELDS:
                if lname == b"content-length":
                    cycle.remaining = self._declared_length(value)
                elif lname == b"connection":
                    close = close or b"close" in value.lower()
                continue  # transfer-encoding: the framing is ours to choose (RFC 9112 §6.1)
            if lname in _DEFAULTABLE:
                own.add(lname)
            lines += (name, b": ", value, b"\r\n")
        for name, value in self.default_headers:
            if name not in own:
                lines += (name, b": ", value, b"\r\n")
        return close

    def _choose_framing(
        self, cycle: _Cycle, status: int, lines: list[bytes], length: int, trailers: bool
    ) -> None:
        """RFC 9112 §6: how the receiver will find the end of this body."""
        declared = cycle.remaining
        cycle.trailers = trailers
        if cycle.head or status in _NO_CONTENT_STATUSES:
            cycle.framing = _Framing.NONE
            # RFC 9110 §9.3.2: HEAD gets the length GET would; an empty body tells nothing.
            if declared < 0 and length > 0:
                declared = length
            if declared >= 0 and status not in _NO_CONTENT_STATUSES:
                lines.append(b"content-length: %d\r\n" % declared)
        elif trailers and not cycle.http_10:
            # Chunked framing carries the trailers; §6.1 forbids a length beside it, but a
            # declared length is still enforced on what the app sends.
            cycle.framing = _Framing.CHUNKED
            lines.append(b"transfer-encoding: chunked\r\n")
        elif declared >= 0 or length >= 0:
            cycle.framing = _Framing.LENGTH
            if declared < 0:
                cycle.remaining = declared = length
            lines.append(b"content-length: %d\r\n" % declared)
        elif cycle.http_10:
            cycle.framing = _Framing.CLOSE
            cycle.keep_alive = False
        else:
            cycle.framing = _Framing.CHUNKED
            lines.append(b"transfer-encoding: chunked\r\n")

    @staticmethod
    def _declared_length(value: bytes) -> int:
        if not value.strip().isdigit():
            raise LocalProtocolError(f"invalid content-length {value!r}")
        return int(value)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        cycle = self._cycle_for(stream_id)
        if not cycle.started:
            raise LocalProtocolError("body sent before the response head")
        if cycle.remaining >= 0:
            cycle.remaining -= len(data)
            if cycle.remaining < 0:
                self._abort(cycle)
                raise LocalProtocolError("response body longer than its Content-Length")
        if data:
            framing = cycle.framing
            if framing is _Framing.CHUNKED:
                self.output.append(b"%x\r\n%s\r\n" % (len(data), data))
            elif framing is not _Framing.NONE:
                self.output.append(data)
        if end_stream:
            if cycle.trailers:
                raise LocalProtocolError("the response ends with its trailers")
            self._end_body(cycle)

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        """Write the trailer section (RFC 9112 §7.1.2), which ends the response."""
        cycle = self._cycle_for(stream_id)
        if not cycle.trailers:
            raise LocalProtocolError("trailers were not announced with the response head")
        validate_fields(headers)
        cycle.trailers = False
        self._check_length(cycle)
        fields = b"".join(b"%s: %s\r\n" % field for field in headers)
        self.output.append(b"0\r\n" + fields + b"\r\n")
        self._finish(cycle)

    def _end_body(self, cycle: _Cycle) -> None:
        if cycle.remaining > 0:
            self._check_length(cycle)
        if cycle.framing is _Framing.CHUNKED:
            self.output.append(b"0\r\n\r\n")
        self._finish(cycle)

    def _check_length(self, cycle: _Cycle) -> None:
        if cycle.remaining > 0 and cycle.framing is not _Framing.NONE:
            self._abort(cycle)
            raise LocalProtocolError("response body shorter than its Content-Length")

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abandon a response midway: HTTP/1.1 can only close the connection (``error_code``
        is HTTP/2's; it has nothing to travel in here)."""
        self._abort(self._cycle_for(stream_id))

    def _abort(self, cycle: _Cycle) -> None:
        self._cycles.clear()
        self.state = ConnectionState.DONE

    def _finish(self, cycle: _Cycle) -> None:
        self._cycles.popleft()
        if not cycle.keep_alive:
            self._cycles.clear()
            self.state = ConnectionState.DONE
        elif self.state is ConnectionState.DRAINING and not self._cycles:
            if self._deferred_error is not None:
                self.output.append(self._deferred_error)
            self.state = ConnectionState.DONE

    def start_closing(self) -> None:
        """Read no further requests (graceful shutdown); close after owed responses."""
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.DRAINING if self._cycles else ConnectionState.DONE

    def data_to_send(self) -> bytes:
        out = self.output
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data
