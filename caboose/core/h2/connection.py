"""HTTP/2 connection (RFC 9113), both roles: received bytes to events, commands to bytes.

Error policy, one rule for the caller:

* ``receive_data`` never raises for anything the peer sends. A *connection error*
  (§5.4.1) queues GOAWAY with the error code and the last stream id we processed, closes the
  connection, and ends the returned events with ``ConnectionTerminated(code, reason)``;
  the events before it stay valid. The caller flushes ``data_to_send()`` and closes.
* A *stream error* (§5.4.2) queues RST_STREAM with its code, emits ``StreamReset(remote=False)``
  when the application knew the stream, and the connection goes on.
* Commands raise ``LocalProtocolError`` when the application misuses the protocol (sending
  beyond the window, on a closed stream, after the connection closed, ...).

The core reads no clock: ``settings_ack_pending`` tells the driver to run a timer and
``settings_timeout()`` ends the connection when it expires (§6.5.3); ``flood.refill()``
restores the flood budgets (limits.py). Received DATA is credited back to the peer only
through ``acknowledge()``, so the application's pace is what the peer sees (§5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from caboose.core.events import AppHeaders, Event, StreamReset
from caboose.errors import ErrorCode, LocalProtocolError

from . import frames as fr
from .base import (
    CLIENT_DEFAULTS,
    DEFAULT_CONNECTION_WINDOW,
    MAX_STREAM_ID,
    SERVER_DEFAULTS,
    ConnectionState,
    S,
    count,
)
from .limits import FloodGuard
from .receive import Receiver
from .stream import (
    NO_BODY_STATUSES,
    PEER_SENDING,
    WE_SENDING,
    ClosedStreams,
    H2Stream,
    StreamInput,
    StreamState,
)
from .validation import outgoing_fields, outgoing_request, outgoing_trailers, split_pseudo
from .window import MAX_WINDOW_SIZE

__all__ = [
    "CLIENT_DEFAULTS",
    "DEFAULT_CONNECTION_WINDOW",
    "SERVER_DEFAULTS",
    "ConnectionState",
    "FloodGuard",
    "H2Connection",
]

_STATUS_FIELDS: Final = {status: (b":status", b"%d" % status) for status in range(100, 1000)}


# DATA payloads at least this large are queued by reference instead of copied (see
# buffers_to_send); below it, one more buffer for the transport costs more than the copy.
_BY_REFERENCE: Final = 4096


def _immutable(data: fr.BytesLike) -> bool:
    """Only bytes (or a read-only view of them) may be queued uncopied: the sender may reuse a
    bytearray as soon as send_data returns."""
    if isinstance(data, bytes):
        return True
    return isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes)


class H2Connection(Receiver):
    """One HTTP/2 connection: server role (``client_side=False``) or client role.

    ``local_settings`` override the role's defaults (SERVER_DEFAULTS / CLIENT_DEFAULTS);
    ``connection_window`` is the receive window we grant the whole connection (sent as a
    WINDOW_UPDATE right after our SETTINGS); ``flood`` holds the flood budgets.
    """

    def __init__(
        self,
        client_side: bool,
        *,
        local_settings: Mapping[int, int] | None = None,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        flood: FloodGuard | None = None,
        closed_memory: int = 1024,
    ) -> None:
        super().__init__(
            client_side,
            local_settings=local_settings,
            connection_window=connection_window,
            flood=flood,
            closed_memory=closed_memory,
        )

    # -- commands: connection --------------------------------------------------------------

    def update_settings(self, values: Mapping[int, int]) -> None:
        """Send new SETTINGS; they apply once the peer acknowledges them (§6.5.3)."""
        self._check_usable()
        self._send_settings(values)

    def accept_upgrade(self, http2_settings: bytes) -> None:
        """Server role, after answering 101 to ``Upgrade: h2c`` (RFC 7540 §3.2).

        RFC 9113 §3.1 deprecates this, so servers offer it only when asked to. The decoded
        HTTP2-Settings payload counts as the client's first SETTINGS (RFC 7540 §3.2.1: the 101
        acknowledges it), and the upgraded request becomes stream 1, half-closed (remote).
        The client's connection preface still follows.
        """
        if self.client_side or self._highest_peer_id:
            raise LocalProtocolError("only a fresh server connection can accept an upgrade")
        self.initiate()
        pairs = fr.parse_settings(0, 0, memoryview(http2_settings))
        changes = self.peer.apply_received(pairs, sender_is_server=False)
        table = changes.get(S.HEADER_TABLE_SIZE)
        if table is not None:
            self._encoder.set_max_table_size(min(table[1], self.max_encoder_table))
        stream = H2Stream(1, self.peer.initial_window_size, self.local.current.initial_window_size)
        stream.advance(StreamInput.RECV_HEADERS)
        stream.advance(StreamInput.RECV_END_STREAM)
        stream.head_received = stream.announced = True
        self._streams[1] = stream
        self._highest_peer_id = 1

    def settings_timeout(self) -> list[Event]:
        """The driver's SETTINGS ACK timer expired: end with SETTINGS_TIMEOUT (§6.5.3)."""
        if self.state is ConnectionState.CLOSED or not self.settings_ack_pending:
            return []
        return [self._connection_error(ErrorCode.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")]

    def ping(self, data: bytes) -> None:
        """Send a PING with 8 opaque octets (§6.7)."""
        self._check_usable()
        fr.write_ping(self._out, data)

    def goaway(
        self, error_code: int = 0, last_stream_id: int | None = None, debug: bytes = b""
    ) -> list[Event]:
        """Send GOAWAY (§6.8); any code but NO_ERROR also closes the connection.

        With NO_ERROR the connection drains: streams up to the last id go on, and the
        driver closes once ``open_streams`` is 0. For a graceful shutdown send
        ``last_stream_id=2**31-1`` first and the default (the highest stream processed)
        after a round trip. Peer streams above an explicit ``last_stream_id`` are dropped:
        the returned events say so (StreamReset REFUSED_STREAM, remote=False).
        """
        self._check_usable()
        last = self._goaway_last_id() if last_stream_id is None else last_stream_id
        if self.goaway_sent is not None and last > self.goaway_sent:
            raise LocalProtocolError("a later GOAWAY cannot raise the last stream id (§6.8)")
        fr.write_goaway(self._out, last, error_code, debug)
        count(self.tally.goaways_sent, error_code)
        self.goaway_sent = last
        if error_code != ErrorCode.NO_ERROR:
            self.state = ConnectionState.CLOSED
            return []
        events: list[Event] = []
        for stream in [s for s in self._streams.values() if s.stream_id > last]:
            if stream.stream_id & 1 == self._peer_parity:
                # The peer takes them as unprocessed (§6.8): no RST_STREAM is needed.
                self._retire(stream, ClosedStreams.RESET_SENT)
                events.append(StreamReset(stream.stream_id, ErrorCode.REFUSED_STREAM, False))
        return events

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call, as one buffer.

        The buffer itself is handed over (and a fresh one started) rather than copied: with
        large bodies that copy was a third of the send cost. The caller owns the result.
        """
        if self._buffers:
            return b"".join(self.buffers_to_send())
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        self.flood.flushed()
        return out

    def buffers_to_send(self) -> list[fr.BytesLike]:
        """Everything queued since the last call, as buffers to write in order (a transport's
        ``writelines``): large bodies come back as views of the sender's own bytes, uncopied.
        An empty list when nothing is queued."""
        buffers = self._buffers
        out = self._out
        if out:
            buffers.append(out)
            self._out = bytearray()
        elif not buffers:
            return buffers
        self._buffers = []
        self.flood.flushed()
        return buffers

    def get_next_available_stream_id(self) -> int:
        """The id a new request should use (client role, §5.1.1)."""
        if not self.client_side:
            raise LocalProtocolError("servers do not open streams (no push)")
        if self._next_local_id > MAX_STREAM_ID:
            raise LocalProtocolError("stream ids exhausted: open a new connection")
        return self._next_local_id

    # -- commands: streams -----------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: AppHeaders, end_stream: bool = False) -> None:
        """Send a head: a request (client role, opens the stream) or a response with
        ``:status`` (server role). Pseudo-headers come first (§8.3)."""
        self._check_usable()
        if self.client_side:
            fields, method = outgoing_request(headers)
            stream = self._open_local_stream(stream_id)
            stream.no_body = method == b"HEAD"
            self._write_head(stream, fields, end_stream)
            return
        pseudo, regular = split_pseudo(headers)
        status = pseudo.pop(b":status", b"")
        if pseudo or len(status) != 3 or not status.isdigit():
            raise LocalProtocolError("a response head has exactly one valid :status (§8.3.2)")
        code = int(status)
        if code < 200:
            if end_stream:
                raise LocalProtocolError("an informational response cannot end the stream")
            self.send_informational(stream_id, code, regular)
        else:
            self.send_head(stream_id, code, regular, end_stream=end_stream)

    def send_head(
        self,
        stream_id: int,
        status: int,
        headers: AppHeaders,
        *,
        end_stream: bool = False,
        trailers: bool = False,
    ) -> None:
        """Send the final response head (server role) with ``status`` as an int.

        ``trailers`` is HTTP/1.1's concern (the framing that carries them); HTTP/2 can always
        end a stream with a trailer section, so it is accepted and needs nothing here.
        """
        stream = self._response_stream(stream_id)
        if not 200 <= status <= 999:
            raise LocalProtocolError(f"invalid final status {status}")
        if status in NO_BODY_STATUSES:
            stream.no_body = True
        fields = [_STATUS_FIELDS[status], *outgoing_fields(headers)]
        self._write_head(stream, fields, end_stream)

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None:
        """Send a 1xx head (§8.1): 100 Continue, 103 Early Hints; never 101 (§8.6)."""
        self._response_stream(stream_id)
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status usable in HTTP/2")
        block = self._encoder.encode([_STATUS_FIELDS[status], *outgoing_fields(headers)])
        fr.write_headers(self._out, stream_id, block, max_frame_size=self.peer.max_frame_size)

    def _response_stream(self, stream_id: int) -> H2Stream:
        self._check_usable()
        if self.client_side:
            raise LocalProtocolError("only a server sends responses")
        stream = self._sending_stream(stream_id)
        if stream.head_sent:
            raise LocalProtocolError(f"stream {stream_id}: response head already sent")
        return stream

    def _write_head(
        self, stream: H2Stream, fields: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        block = self._encoder.encode(fields)
        if stream.state is StreamState.IDLE:  # a request opens its stream (§5.1)
            self._streams[stream.stream_id] = stream
            self._next_local_id = stream.stream_id + 2
        stream.advance(StreamInput.SEND_HEADERS)
        stream.head_sent = True
        fr.write_headers(
            self._out,
            stream.stream_id,
            block,
            end_stream=end_stream,
            max_frame_size=self.peer.max_frame_size,
        )
        if end_stream:
            self._end_local(stream)

    def send_data(self, stream_id: int, data: fr.BytesLike, end_stream: bool = False) -> None:
        """Send body bytes, at most ``sendable(stream_id)`` of them (split into frames).

        A memoryview is welcome (a slice of a body larger than the window). A large payload
        of bytes is queued by reference (``buffers_to_send``); anything mutable is copied, so
        the caller may reuse it at once."""
        self._check_usable()
        stream = self._sending_stream(stream_id)
        if not stream.head_sent:
            raise LocalProtocolError(f"stream {stream_id}: DATA before the head (§8.1)")
        if stream.no_body and not self.client_side:
            # Our response to HEAD, or a 204/304: the content is never sent (RFC 9110 §6.4.1,
            # §9.3.2), but the end of the stream still is. (A client's no_body describes the
            # response it receives, not its request.)
            if end_stream:
                fr.write_data(self._out, stream_id, b"", end_stream=True)
                self._end_local(stream)
            return
        size = len(data)
        if size:
            outbound = self._outbound
            if size > stream.outbound.available or size > outbound.available:
                raise LocalProtocolError(
                    f"stream {stream_id}: {size} bytes exceed the flow-control window "
                    f"({self.sendable(stream_id)} sendable)",
                    code=ErrorCode.FLOW_CONTROL_ERROR,
                    stream_id=stream_id,
                )
            stream.outbound.available -= size
            outbound.available -= size
        max_size = self.peer.max_frame_size
        if size >= _BY_REFERENCE and _immutable(data):
            self._queue_by_reference(stream_id, data, end_stream, max_size)
        elif size <= max_size:
            fr.write_data(self._out, stream_id, data, end_stream=end_stream)
        else:
            view = memoryview(data)
            for start in range(0, size, max_size):
                chunk = view[start : start + max_size]
                last = end_stream and start + max_size >= size
                fr.write_data(self._out, stream_id, chunk, end_stream=last)
        if end_stream:
            self._end_local(stream)

    def _queue_by_reference(
        self, stream_id: int, data: fr.BytesLike, end_stream: bool, max_size: int
    ) -> None:
        # The frames queued so far close the output buffer; then each frame's header (bytes)
        # and a view of its payload follow, so a large body reaches the socket (writev)
        # without being copied into our buffer: that copy, and the reallocations of a growing
        # buffer, were a fifth of a 1 MiB response.
        view = memoryview(data)
        buffers = self._buffers
        if self._out:
            buffers.append(self._out)
            self._out = bytearray()
        size = len(view)
        for start in range(0, size, max_size):
            chunk = view[start : start + max_size]
            last = end_stream and start + max_size >= size
            buffers.append(fr.data_frame_header(stream_id, len(chunk), last))
            buffers.append(chunk)

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        """Send the trailer section: HEADERS with END_STREAM, no pseudo-headers (§8.1)."""
        self._check_usable()
        stream = self._sending_stream(stream_id)
        if not stream.head_sent:
            raise LocalProtocolError(f"stream {stream_id}: trailers before the head")
        block = self._encoder.encode(outgoing_trailers(headers))
        fr.write_headers(
            self._out, stream_id, block, end_stream=True, max_frame_size=self.peer.max_frame_size
        )
        self._end_local(stream)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        """Abort a stream with RST_STREAM (§6.4); a closed stream or connection is left alone."""
        if self.state is ConnectionState.CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise LocalProtocolError(f"stream {stream_id} is idle: nothing to reset (§5.1)")
            return
        fr.write_rst_stream(self._out, stream_id, error_code)
        count(self.tally.resets_sent, error_code)
        stream.advance(StreamInput.SEND_RST)
        self._retire(stream, ClosedStreams.RESET_SENT)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` flow-controlled octets of ``stream_id``.

        Credits them back on the stream and the connection (§6.9), batched by ReceiveWindow.
        Call it for every DataReceived, with its ``flow_controlled_length``, once consumed.
        """
        if size <= 0 or self.state is ConnectionState.CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is not None:
            size = min(size, stream.unacked)
            stream.unacked -= size
            if stream.state in PEER_SENDING:
                increment = stream.inbound.consume(size)
                if increment:
                    fr.write_window_update(self._out, stream_id, increment)
        else:
            owed = self._closed_unacked.pop(stream_id, 0)
            if size < owed:
                self._closed_unacked[stream_id] = owed - size
            size = min(size, owed)
        if size:
            self._credit_connection(size)

    def sendable(self, stream_id: int) -> int:
        """How many DATA octets ``send_data`` accepts now (stream and connection windows)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in WE_SENDING:
            return 0
        if stream.no_body and not self.client_side:
            return MAX_WINDOW_SIZE  # discarded, so never held back by flow control
        return max(0, min(stream.outbound.available, self._outbound.available))

    # -- helpers shared with the receive side ----------------------------------------------

    def _check_usable(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise LocalProtocolError("the connection is closed")
        if not self._initiated:
            self.initiate()

    def _sending_stream(self, stream_id: int) -> H2Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in WE_SENDING:
            raise LocalProtocolError(
                f"stream {stream_id} is not open for sending",
                code=ErrorCode.STREAM_CLOSED,
                stream_id=stream_id,
            )
        return stream

    def _open_local_stream(self, stream_id: int) -> H2Stream:
        """A stream we initiate (client role), checked against §5.1.1 and §5.1.2.

        ``_write_head`` registers it once its field block is encoded.
        """
        if self.goaway_received is not None or self.goaway_sent is not None:
            raise LocalProtocolError("no new streams after GOAWAY (§6.8)")
        if stream_id & 1 != 1 or not self._next_local_id <= stream_id <= MAX_STREAM_ID:
            raise LocalProtocolError(
                f"stream id {stream_id}: must be odd and above {self._next_local_id - 2} (§5.1.1)"
            )
        if len(self._streams) >= self.peer.max_concurrent_streams:
            raise LocalProtocolError(
                "the peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached (§5.1.2)",
                code=ErrorCode.REFUSED_STREAM,
            )
        stream = H2Stream(
            stream_id, self.peer.initial_window_size, self.local.current.initial_window_size
        )
        stream.announced = True
        return stream
