"""HTTP/2 peers for integration and security tests: not ours, bounded, over a real socket.

Two peers, one log format:

* ``H2Peer`` is a client on the python-hyper ``h2`` library (an implementation we did not
  write), for behaviour a well-behaved client sees: flow control, resets, settings.
* ``RawPeer`` writes hand-made frames (its own tiny HPACK literal encoder) and reads the
  server's frames with ``hyperframe`` and ``hpack``, for what ``h2`` refuses to do: exceed
  the server's limits, send frames on closed streams, floods, broken prefaces.

Every socket has a timeout and every wait a deadline, so a misbehaving server fails the test
instead of hanging it. Times are ``time.monotonic()`` (shared with the server's thread).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

Fields = list[tuple[bytes, bytes]]

TIMEOUT = 5.0  # the longest any single wait in these tests may take
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6), spelled out so the tests do not lean on our own codec.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x6, 0x7, 0x8, 0x9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4

# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x5, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB

# Settings identifiers (RFC 9113 §6.5.2).
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS = 0x1, 0x3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6


def request_fields(path: str = "/", method: str = "GET", extra: Iterable[Any] = ()) -> Fields:
    fields = [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path.encode()),
    ]
    return fields + [(bytes(name), bytes(value)) for name, value in extra]


# -- hand-made frames --------------------------------------------------------------------------


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, byte for byte (RFC 9113 §4.1): the length is computed, nothing is checked."""
    header = len(payload).to_bytes(3, "big") + bytes([frame_type, flags])
    return header + stream_id.to_bytes(4, "big") + payload


def settings(values: dict[int, int] | None = None, *, ack: bool = False) -> bytes:
    payload = b"".join(
        k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in (values or {}).items()
    )
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping(data: bytes = b"12345678", *, ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data)


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def goaway(last_stream_id: int, code: int = NO_ERROR, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + debug)


def data(stream_id: int, payload: bytes, *, end_stream: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def headers(
    stream_id: int,
    fields: Fields | bytes,
    *,
    end_stream: bool = True,
    end_headers: bool = True,
) -> bytes:
    """HEADERS with ``fields`` as HPACK literals (or an already encoded block)."""
    block = fields if isinstance(fields, bytes) else hpack_literals(fields)
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream_id, block)


def continuation(stream_id: int, fragment: bytes, *, end_headers: bool = False) -> bytes:
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, fragment)


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(value: bytes) -> bytes:
    """A raw (not Huffman-coded) string literal (RFC 7541 §5.2)."""
    return hpack_int(len(value), 7) + value


def hpack_literals(fields: Fields, *, indexed: bool = False) -> bytes:
    """Literal fields with new names (RFC 7541 §6.2): without indexing, so the server's
    dynamic table is left alone, unless ``indexed`` asks for incremental indexing."""
    first = b"\x40" if indexed else b"\x00"
    return b"".join(first + hpack_string(name) + hpack_string(value) for name, value in fields)


def hpack_indexed(index: int) -> bytes:
    """An indexed field (RFC 7541 §6.1); dynamic entries start at 62."""
    return hpack_int(index, 7, 0x80)


# -- what a peer received ----------------------------------------------------------------------


@dataclass
class StreamLog:
    """Everything received on one stream."""

    stream_id: int
    status: int | None = None
    headers: Fields = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: Fields | None = None
    ended: bool = False
    reset: int | None = None  # the error code of the server's RST_STREAM
    first_data_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    def _head(self, fields: Fields, end: bool) -> None:
        pseudo = dict(f for f in fields if f[0].startswith(b":"))
        regular = [f for f in fields if not f[0].startswith(b":")]
        if b":status" in pseudo:
            status = int(pseudo[b":status"])
            if status < 200:
                self.informational.append(status)
            else:
                self.status, self.headers = status, regular
        else:
            self.trailers = regular
        if end:
            self._end()

    def _data(self, payload: bytes, end: bool) -> None:
        if self.first_data_at is None and payload:
            self.first_data_at = time.monotonic()
        self.data += payload
        if end:
            self._end()

    def _end(self) -> None:
        self.ended = True
        self.finished_at = time.monotonic()

    def _reset(self, code: int) -> None:
        self.reset = code
        self.finished_at = time.monotonic()


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int
    debug: bytes = b""
    at: float = field(default_factory=time.monotonic)


class _Peer:
    """Socket plumbing shared by both peers: bounded reads, a log per stream."""

    def __init__(
        self, port: int, *, rcvbuf: int | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the TCP window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            assert sock.selected_alpn_protocol() == "h2", "the server did not choose h2"
        self.sock = sock
        self.streams: dict[int, StreamLog] = {}
        self.goaways: list[GoAway] = []
        self.closed = False  # the server closed (or reset) the TCP connection: EOF read
        self.broken = False  # a write failed: the server is gone or stopped taking data
        self.closed_at: float | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def stream(self, stream_id: int) -> StreamLog:
        log = self.streams.get(stream_id)
        if log is None:
            log = self.streams[stream_id] = StreamLog(stream_id)
        return log

    @property
    def goaway(self) -> GoAway | None:
        return self.goaways[0] if self.goaways else None

    def send(self, payload: bytes) -> bool:
        """Write raw bytes; False (and ``broken``) once the server no longer takes them.

        What the server sent before closing stays readable: ``pump`` still reads it.
        """
        if self.broken:
            return False
        try:
            self.sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.broken = True
            return False
        return True

    def try_send(self, payload: bytes, timeout: float) -> bool | None:
        """Write unless the server stops reading: None when nothing more fits in ``timeout``."""
        view = memoryview(payload)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            _, writable, _ = select.select([], [self.sock], [], left)
            if not writable:
                return None
            try:
                sent = self.sock.send(view[:65536], socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                self.broken = True
                return False
            view = view[sent:]
        return True

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.closed_at = time.monotonic()

    def _recv(self, timeout: float) -> bytes | None:
        """One read: bytes, None if nothing came within ``timeout``, b"" once closed."""
        if self.closed:
            return b""
        sock = self.sock
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()  # decrypted, unread
        if not pending and not select.select([sock], [], [], max(timeout, 0))[0]:
            return None
        try:
            chunk = sock.recv(1 << 20)
        except ssl.SSLWantReadError:
            return None  # a TLS record is still incomplete
        except (ConnectionResetError, ConnectionAbortedError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self._closed()
        return chunk

    def pump(self, until: Callable[[], bool] | None = None, timeout: float = TIMEOUT) -> bool:
        """Read and handle frames until ``until()`` holds (True), or the deadline or the
        connection's end (False). Without ``until``: read for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):  # bounded; the deadline ends it far sooner
            if until is not None and until():
                return True
            if self.closed:
                break
            left = deadline - time.monotonic()
            chunk = self._recv(min(max(left, 0), 0.05))  # always one look, even at timeout 0
            if chunk:
                self._feed(chunk)
            elif chunk is None and left <= 0:
                break
        return until is not None and until()

    def wait(self, stream_id: int, timeout: float = TIMEOUT) -> StreamLog:
        """The stream's log once it ended or was reset; AssertionError on the deadline."""
        log = self.stream(stream_id)
        assert self.pump(lambda: log.done, timeout), f"stream {stream_id} unfinished: {log}"
        return log

    def wait_closed(self, timeout: float = TIMEOUT) -> bool:
        return self.pump(lambda: self.closed, timeout)

    def _feed(self, chunk: bytes) -> None:
        raise NotImplementedError


class H2Peer(_Peer):
    """A client on the python-hyper ``h2`` library.

    ``local`` overrides our SETTINGS (e.g. a tiny INITIAL_WINDOW_SIZE); ``connection_window``
    is added to the connection's receive window at once. Received DATA is credited back
    (WINDOW_UPDATE on the stream and the connection) unless ``auto_ack`` is off or the
    stream is in ``hold``.
    """

    def __init__(
        self,
        port: int,
        *,
        local: dict[int, int] | None = None,
        connection_window: int = 0,
        auto_ack: bool = True,
        handshake: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(port, tls=tls)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        if local:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=local)
        self.auto_ack = auto_ack
        self.hold: set[int] = set()
        self.events: list[h2.events.Event] = []
        self.remote_settings_seen = False
        self.conn.initiate_connection()
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.flush()
        if handshake:
            assert self.pump(lambda: self.remote_settings_seen), "no SETTINGS from the server"

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.send(out)

    def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        extra: Iterable[Any] = (),
        body: bytes | None = None,
        end_stream: bool = True,
    ) -> int:
        """Open a stream; a ``body`` that does not fit the windows is sent by ``upload``."""
        stream_id = self.conn.get_next_available_stream_id()
        self.stream(stream_id)
        fields = request_fields(path, method, extra)
        self.conn.send_headers(stream_id, fields, end_stream=end_stream and body is None)
        self.flush()
        if body is not None:
            self.upload(stream_id, body, end_stream=end_stream)
        return stream_id

    def upload(
        self, stream_id: int, body: bytes, *, end_stream: bool = True, timeout: float = TIMEOUT
    ) -> None:
        """Send ``body`` as the server's windows allow; AssertionError if they stay shut."""
        view = memoryview(body)
        conn = self.conn
        deadline = time.monotonic() + timeout
        while view:
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                left = deadline - time.monotonic()
                opened = self.pump(lambda: conn.local_flow_control_window(stream_id) > 0, left)
                assert opened, f"stream {stream_id}: window shut with {len(view)} bytes unsent"
                continue
            conn.send_data(stream_id, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end_stream:
            conn.end_stream(stream_id)
            self.flush()

    def get(self, path: str = "/", timeout: float = TIMEOUT, **kwargs: Any) -> StreamLog:
        return self.wait(self.request(path, **kwargs), timeout)

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    def open_window(self, stream_id: int, increment: int) -> None:
        """WINDOW_UPDATE on ``stream_id`` (0: the connection)."""
        self.conn.increment_flow_control_window(increment, stream_id or None)
        self.flush()

    def _feed(self, chunk: bytes) -> None:
        for event in self.conn.receive_data(chunk):
            self.events.append(event)
            self._on_event(event)
        self.flush()

    def _on_event(self, event: h2.events.Event) -> None:
        match event:
            case h2.events.RemoteSettingsChanged():
                self.remote_settings_seen = True
            case h2.events.ResponseReceived() | h2.events.InformationalResponseReceived():
                self.stream(event.stream_id)._head(list(event.headers), False)
            case h2.events.TrailersReceived():
                self.stream(event.stream_id)._head(list(event.headers), False)
            case h2.events.DataReceived():
                self.stream(event.stream_id)._data(event.data, False)
                self._ack(event.stream_id, event.flow_controlled_length, event.stream_ended)
            case h2.events.StreamEnded():
                self.stream(event.stream_id)._end()
            case h2.events.StreamReset():
                self.stream(event.stream_id)._reset(event.error_code)
            case h2.events.ConnectionTerminated():
                last = event.last_stream_id or 0
                self.goaways.append(GoAway(last, event.error_code, event.additional_data or b""))

    def _ack(self, stream_id: int, size: int, ended: object) -> None:
        if not self.auto_ack or not size:
            return
        self.conn.increment_flow_control_window(size)
        if stream_id not in self.hold and ended is None:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.increment_flow_control_window(size, stream_id)


class RawPeer(_Peer):
    """Hand-made frames out; the server's frames parsed by ``hyperframe`` and ``hpack``.

    The handshake sends the preface and our SETTINGS (plus a large connection window), waits
    for the server's SETTINGS and acknowledges them. PINGs from the server are answered.
    """

    def __init__(
        self,
        port: int,
        *,
        local: dict[int, int] | None = None,
        connection_window: int = 1 << 24,
        handshake: bool = True,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(port, rcvbuf=rcvbuf, tls=tls)
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.buffer = bytearray()
        self.frames: list[Frame] = []
        self.server_settings: dict[int, int] | None = None
        self.settings_acks = 0
        self.ping_acks = 0
        self._block: tuple[int, int, bytearray] | None = None  # (stream, flags, fragments)
        if handshake:
            out = PREFACE + settings(local or {})
            if connection_window:
                out += window_update(0, connection_window)
            self.send(out)
            assert self.pump(lambda: self.server_settings is not None), "no server SETTINGS"

    def open(
        self, stream_id: int, path: str = "/", *, method: str = "GET", end_stream: bool = True
    ) -> bytes:
        """The bytes of a HEADERS frame opening ``stream_id`` (send them yourself)."""
        return headers(stream_id, request_fields(path, method), end_stream=end_stream)

    def frames_of(self, frame_type: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, frame_type)]

    def _feed(self, chunk: bytes) -> None:
        buf = self.buffer
        buf += chunk
        while len(buf) >= 9:
            parsed, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
            if len(buf) < 9 + length:
                break
            parsed.parse_body(memoryview(bytes(buf[9 : 9 + length])))
            del buf[: 9 + length]
            self.frames.append(parsed)
            self._on_frame(parsed)

    def _on_frame(self, f: Frame) -> None:
        flags = f.flags
        match f:
            case SettingsFrame():
                if "ACK" in flags:
                    self.settings_acks += 1
                else:
                    self.server_settings = {**(self.server_settings or {}), **f.settings}
                    self.send(settings(ack=True))
            case PingFrame():
                if "ACK" in flags:
                    self.ping_acks += 1
                else:
                    self.send(ping(f.opaque_data, ack=True))
            case HeadersFrame():
                self._block = (f.stream_id, END_STREAM if "END_STREAM" in flags else 0, bytearray())
                self._fragment(f.data, "END_HEADERS" in flags)
            case ContinuationFrame():
                self._fragment(f.data, "END_HEADERS" in flags)
            case DataFrame():
                self.stream(f.stream_id)._data(f.data, "END_STREAM" in flags)
            case RstStreamFrame():
                self.stream(f.stream_id)._reset(f.error_code)
            case GoAwayFrame():
                self.goaways.append(GoAway(f.last_stream_id, f.error_code, f.additional_data))
            case WindowUpdateFrame():
                pass

    def _fragment(self, fragment: bytes, end_headers: bool) -> None:
        assert self._block is not None, "CONTINUATION without HEADERS from the server"
        stream_id, end, block = self._block
        block += fragment
        if end_headers:
            self._block = None
            fields = [(bytes(k), bytes(v)) for k, v in self.decoder.decode(bytes(block), raw=True)]
            self.stream(stream_id)._head(fields, bool(end))


def settle(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Wait (bounded, 10 ms steps) for something another thread sets; True if it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
