"""A minimal synchronous HTTP/2 client on the python-hyper ``h2`` library, for tests.

It is a peer we did not write: h2c by prior knowledge over a plain socket, one connection,
any number of streams. Every wait has a deadline and every socket a timeout, so a test that
meets a misbehaving server fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

Fields = list[tuple[bytes, bytes]]


@dataclass
class H2Stream:
    """Everything received on one stream, in arrival order where order matters."""

    stream_id: int
    status: int | None = None
    headers: Fields = field(default_factory=list)  # without pseudo-headers
    informational: list[Fields] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    trailers: Fields | None = None
    ended: bool = False
    reset: int | None = None  # the error code of a RST_STREAM the server sent
    kinds: list[str] = field(default_factory=list)  # event class names, in order
    finished_at: float | None = None  # time.monotonic() of END_STREAM or RST_STREAM

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client:
    """One HTTP/2 connection to 127.0.0.1:``port``, prior knowledge, cleartext."""

    def __init__(self, port: int, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.authority = b"127.0.0.1:%d" % port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.streams: dict[int, H2Stream] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False  # the server closed the socket
        self.flush()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- sending -----------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.sock.sendall(data)

    def request(
        self,
        method: bytes = b"GET",
        path: bytes = b"/",
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        trailers: Fields | None = None,
        end_stream: bool = True,
    ) -> int:
        """Open a stream and send a request; with ``end_stream=False`` it stays open."""
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = H2Stream(stream_id)
        head = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", self.authority),
            (b":path", path),
            *headers,
        ]
        only_head = body is None and trailers is None
        self.conn.send_headers(stream_id, head, end_stream=only_head and end_stream)
        self.flush()
        if body is not None:
            self.send_body(stream_id, body, end_stream=trailers is None and end_stream)
        if trailers is not None:
            self.send_trailers(stream_id, trailers)
        return stream_id

    def send_body(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as flow control allows, waiting for WINDOW_UPDATEs as needed."""
        view = memoryview(data)
        while True:
            room = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if room == 0 and view:
                self.wait_for(
                    lambda: self.conn.local_flow_control_window(stream_id) > 0,
                    what=f"a flow-control window on stream {stream_id}",
                )
                continue
            chunk, view = view[:room], view[room:]
            last = not view
            self.conn.send_data(stream_id, bytes(chunk), end_stream=end_stream and last)
            self.flush()
            if last:
                return

    def send_trailers(self, stream_id: int, trailers: Fields) -> None:
        self.conn.send_headers(stream_id, trailers, end_stream=True)
        self.flush()

    def end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self.conn.reset_stream(stream_id, error_code=code)
        self.flush()

    # -- receiving ---------------------------------------------------------------------------

    def get(self, path: bytes = b"/", **options: object) -> H2Stream:
        """One whole exchange: send a request and wait until its response ends."""
        method = options.pop("method", b"GET")
        assert isinstance(method, bytes)
        stream_id = self.request(method, path, **options)  # type: ignore[arg-type]
        return self.response(stream_id)

    def response(self, stream_id: int, timeout: float | None = None) -> H2Stream:
        stream = self.streams[stream_id]
        self.wait_for(lambda: stream.done, timeout, what=f"the end of stream {stream_id}")
        return stream

    def wait_for(
        self, condition: Callable[[], bool], timeout: float | None = None, *, what: str = "it"
    ) -> None:
        """Read from the socket until ``condition()`` holds. Raises TimeoutError at the
        deadline and ConnectionError if the server closed the connection first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not condition():
            if self.closed:
                raise ConnectionError(f"the server closed the connection before {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            self.sock.settimeout(left)
            try:
                self.receive_once()
            except TimeoutError:
                raise TimeoutError(f"timed out waiting for {what}") from None

    def receive_once(self) -> None:
        """One recv() call; its events are recorded on the streams."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # The h2 library is strict: what it refuses, the server should not have sent.
            self.flush()  # its GOAWAY, as a courtesy
            raise AssertionError(f"the server broke HTTP/2: {exc!r}") from exc
        for event in events:
            self._record(event)
        self.flush()

    def _record(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event
            return
        stream_id = getattr(event, "stream_id", 0)
        stream = self.streams.get(stream_id) if stream_id else None
        if stream is None:
            return
        stream.kinds.append(type(event).__name__)
        match event:
            case h2.events.ResponseReceived(headers=headers):
                stream.status = int(dict(headers)[b":status"])
                stream.headers = [(n, v) for n, v in headers if not n.startswith(b":")]
            case h2.events.InformationalResponseReceived(headers=headers):
                stream.informational.append(list(headers))
            case h2.events.DataReceived(data=data, flow_controlled_length=length):
                stream.data += data
                stream.data_frames += 1
                # Credit the server at once: these tests read everything they receive.
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(length, stream_id)
            case h2.events.TrailersReceived(headers=headers):
                stream.trailers = list(headers)
            case h2.events.StreamEnded():
                stream.ended = True
                stream.finished_at = time.monotonic()
            case h2.events.StreamReset(error_code=code):
                stream.reset = int(code)
                stream.finished_at = time.monotonic()
