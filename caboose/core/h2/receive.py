"""Received HTTP/2 frames (RFC 9113 §4-§8) turned into events, for both roles."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Final

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    InformationalResponseReceived,
    PingAcknowledged,
    PingReceived,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from caboose.errors import ErrorCode, RemoteProtocolError

from . import frames as fr
from .base import ConnectionBase, ConnectionState, PendingBlock, S, connection_error, count
from .errors import HeaderListTooLarge
from .settings import UNLIMITED
from .stream import (
    NO_BODY_STATUSES,
    PEER_SENDING,
    WE_SENDING,
    ClosedStreams,
    H2Stream,
    StreamInput,
    StreamState,
)
from .validation import (
    Field,
    RequestHead,
    check_request,
    check_response,
    check_trailers,
    malformed,
)

# Request heads cached per connection (see ConnectionBase._request_heads): small blocks only.
_HEAD_CACHE_ENTRIES: Final = 64
_HEAD_CACHE_MAX_OCTETS: Final = 256

_END_STREAM: Final = fr.FLAG_END_STREAM
_END_HEADERS: Final = fr.FLAG_END_HEADERS
_CONTINUATION: Final = 0x9
_STATUS_431: Final = [(b":status", b"431")]
_RESET_SENT: Final = ClosedStreams.RESET_SENT
_RESET_RECEIVED: Final = ClosedStreams.RESET_RECEIVED


def _stream_closed(stream_id: int, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ErrorCode.STREAM_CLOSED, stream_id=stream_id)


class Receiver(ConnectionBase):
    """The receive side: ``receive_data`` and one handler per frame type."""

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes (``b""``: the peer closed); return the events they caused."""
        if self.state is ConnectionState.CLOSED:
            return []
        if not self._initiated:
            self.initiate()
        events: list[Event] = []
        self._events = events
        if not data:
            self.state = ConnectionState.CLOSED
            events.append(ConnectionTerminated(ErrorCode.NO_ERROR, "the peer closed"))
            return events
        try:
            self._receive_frames(self._reader.receive(data))
        except RemoteProtocolError as exc:
            events.append(self._connection_error(exc.code, str(exc)))
        return events

    def _receive_frames(self, frames: list[fr.Frame]) -> None:
        handlers = _HANDLERS
        for frame_type, flags, stream_id, payload in frames:
            if self._block is not None and frame_type != _CONTINUATION:
                # §4.3, §6.10: a field block is contiguous; nothing may interleave.
                raise connection_error("header block interrupted by another frame")
            if self.state is not ConnectionState.OPEN:
                self._check_first(frame_type, flags)
            handler = handlers.get(frame_type)
            if handler is None:
                continue  # §4.1, §5.5: frames of unknown type are ignored
            try:
                handler(self, flags, stream_id, payload)
            except RemoteProtocolError as exc:
                if not exc.stream_id:
                    raise
                self._stream_error(exc.stream_id, exc.code)

    def _check_first(self, frame_type: int, flags: int) -> None:
        # §3.4: the peer's preface ends with a SETTINGS frame, its first frame.
        if frame_type != fr.FrameType.SETTINGS or flags & fr.FLAG_ACK:
            raise connection_error("the peer's first frame is not SETTINGS (§3.4)")
        self.state = ConnectionState.OPEN

    # -- DATA (§6.1) ------------------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        data = fr.parse_data(stream_id, flags, payload)
        size = len(payload)  # flow control counts padding too (§6.9)
        self._inbound.receive(size)  # §6.9.1: overrunning the connection window
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in PEER_SENDING or not stream.head_received:
            self._credit_connection(size)  # no application will acknowledge these
            self._data_elsewhere(stream, stream_id)
            return
        stream.unacked += size  # from here a reset credits the connection (see _retire)
        stream.inbound.receive(size)
        end = flags & _END_STREAM
        if data:
            received = stream.received_length + len(data)
            stream.received_length = received
            if received > stream.expected_length >= 0:
                malformed(stream_id, "more DATA than content-length (§8.1.1)")
        elif not end:
            self.flood.empty_frame()
        if end:
            self._check_length(stream)
        if size:  # an empty frame carries nothing but, perhaps, the END_STREAM below
            self._events.append(DataReceived(stream_id, bytes(data), size, bool(end)))
        if end:
            self._end_remote(stream)

    def _data_elsewhere(self, stream: H2Stream | None, stream_id: int) -> None:
        """DATA on a stream that cannot take it; returns only when it is to be ignored."""
        if stream is not None:
            if stream.state in PEER_SENDING:
                malformed(stream_id, "DATA before the response head (§8.1)")
            raise _stream_closed(stream_id, "DATA after END_STREAM (§5.1 half-closed)")
        if self._is_idle(stream_id):
            raise connection_error(f"DATA on idle stream {stream_id} (§5.1)")
        self._on_closed_stream(stream_id, "DATA")

    def _on_closed_stream(self, stream_id: int, what: str) -> None:
        """§5.1 closed: ignore what may cross our RST_STREAM, refuse the rest."""
        how = self._closed.get(stream_id)
        if how == _RESET_SENT:
            return
        if how == _RESET_RECEIVED:
            raise _stream_closed(stream_id, f"{what} after RST_STREAM (§5.1)")
        if how is None and what == "HEADERS":
            raise connection_error(f"stream {stream_id} is below one already opened (§5.1.1)")
        raise connection_error(
            f"{what} on closed stream {stream_id} (§5.1)", ErrorCode.STREAM_CLOSED
        )

    def _check_length(self, stream: H2Stream) -> None:
        expected = stream.expected_length
        if expected >= 0 and stream.received_length != expected:
            malformed(stream.stream_id, "DATA does not add up to content-length (§8.1.1)")

    def _end_remote(self, stream: H2Stream) -> None:
        self._events.append(StreamEnded(stream.stream_id))
        if stream.advance(StreamInput.RECV_END_STREAM) is StreamState.CLOSED:
            self._retire(stream, ClosedStreams.ENDED)

    # -- field blocks: HEADERS, CONTINUATION, PUSH_PROMISE (§4.3, §6.2, §6.6, §6.10) -------

    def _on_headers(self, flags: int, stream_id: int, payload: memoryview) -> None:
        priority, fragment = fr.parse_headers_payload(stream_id, flags, payload)
        if flags & _END_HEADERS:
            self._on_block(stream_id, flags, priority, fragment)
        else:
            self._block = PendingBlock(stream_id, flags, priority, fragment)

    def _on_continuation(self, flags: int, stream_id: int, payload: memoryview) -> None:
        block = self._block
        if block is None or stream_id != block.stream_id:
            raise connection_error("CONTINUATION not following its stream's HEADERS (§6.10)")
        if not payload:
            self.flood.empty_frame()
        block.data += payload
        if len(block.data) > self.max_header_block:
            raise connection_error("header block too large", ErrorCode.ENHANCE_YOUR_CALM)
        if flags & _END_HEADERS:
            self._block = None
            self._on_block(stream_id, block.flags, block.priority, bytes(block.data))

    def _on_push_promise(self, flags: int, stream_id: int, payload: memoryview) -> None:
        # §8.4: clients never push; our clients disable push (§6.5.2), so either way.
        raise connection_error("PUSH_PROMISE received, push is disabled (§6.6, §8.4)")

    def _on_block(
        self, stream_id: int, flags: int, priority: fr.Priority | None, block: bytes | memoryview
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._on_stream_headers(stream, flags, priority, block)
        elif not self.client_side and stream_id & 1 and stream_id > self._highest_peer_id:
            self._open_peer_stream(stream_id, flags, priority, block)
        elif self._is_idle(stream_id):
            raise connection_error(f"HEADERS opening stream {stream_id} (§5.1.1)")
        else:
            with suppress(HeaderListTooLarge):  # §4.3: the block still updates HPACK state
                self._decoder.decode(block)
            self._on_closed_stream(stream_id, "HEADERS")

    def _decode(self, block: bytes | memoryview, stream_id: int) -> list[Field]:
        try:
            return self._decoder.decode(block)
        except HeaderListTooLarge as exc:
            raise RemoteProtocolError(str(exc), code=exc.code, stream_id=stream_id) from None

    def _open_peer_stream(
        self, stream_id: int, flags: int, priority: fr.Priority | None, block: bytes | memoryview
    ) -> None:
        """A request opens a stream (server role, §5.1, §8.3.1)."""
        self._highest_peer_id = stream_id  # §5.1.1: lower idle ids are now closed
        data = block if type(block) is bytes else bytes(block)
        cached = self._request_heads.get(data)
        generation = self._decoder.generation
        if cached is not None and cached[0] == generation:
            head: RequestHead | None = cached[1]
        else:
            try:
                fields = self._decoder.decode(data)
            except HeaderListTooLarge:
                self._refuse_too_large(stream_id, flags)
                return
            head = None
        if priority is not None:
            fr.check_priority(stream_id, priority)
        if self.goaway_sent is not None and stream_id > self.goaway_sent:
            self._closed.add(stream_id, _RESET_SENT)  # §6.8: streams after GOAWAY are ignored
            return
        if len(self._streams) >= self._max_peer_streams:
            fr.write_rst_stream(self._out, stream_id, ErrorCode.REFUSED_STREAM)  # §5.1.2
            count(self.tally.resets_sent, ErrorCode.REFUSED_STREAM)
            self._closed.add(stream_id, _RESET_SENT)
            return
        if head is None:
            head = self._check_request(data, fields, stream_id, generation)
        method, scheme, authority, path, protocol, headers, length, trailers, expect = head
        headers = list(headers)  # the app owns its copy (scope["headers"] may be edited)
        end = flags & _END_STREAM
        if end and length > 0:
            malformed(stream_id, "content-length without content (§8.1.1)")
        stream = H2Stream(
            stream_id, self.peer.initial_window_size, self.local.current.initial_window_size
        )
        stream.advance(StreamInput.RECV_HEADERS)
        stream.head_received = stream.announced = True
        stream.expected_length = length
        stream.no_body = method == b"HEAD"  # RFC 9110 §9.3.2: its response carries no content
        self._streams[stream_id] = stream
        self._events.append(
            RequestReceived(
                stream_id,
                method,
                path,
                headers,
                "2",
                bool(end),
                scheme,
                authority,
                protocol,
                trailers,
                expect,
            )
        )
        if end:
            self._end_remote(stream)

    def _check_request(
        self, data: bytes, fields: list[Field], stream_id: int, generation: int
    ) -> RequestHead:
        """§8 checks of a request block; remembered if the block left the table unchanged."""
        head = check_request(fields, stream_id, extended_connect=self._extended_connect)
        decoder = self._decoder
        cache = self._request_heads
        stable = decoder.generation == generation and not decoder.never_indexed
        if stable and len(data) <= _HEAD_CACHE_MAX_OCTETS:
            if len(cache) >= _HEAD_CACHE_ENTRIES:
                cache.clear()
            cache[data] = (generation, head)
        return head

    def _refuse_too_large(self, stream_id: int, flags: int) -> None:
        """Answer 431 to a request whose fields exceed our limit (RFC 6585 §5)."""
        block = self._encoder.encode(_STATUS_431)
        out = self._out
        fr.write_headers(
            out, stream_id, block, end_stream=True, max_frame_size=self.peer.max_frame_size
        )
        if not flags & _END_STREAM:
            # §8.1: a complete response may precede the request's end; stop its upload.
            fr.write_rst_stream(out, stream_id, ErrorCode.NO_ERROR)
            count(self.tally.resets_sent, ErrorCode.NO_ERROR)
        self._closed.add(stream_id, _RESET_SENT)

    def _on_stream_headers(
        self, stream: H2Stream, flags: int, priority: fr.Priority | None, block: bytes | memoryview
    ) -> None:
        """A field block on an open stream: a response head (client role) or trailers."""
        stream_id = stream.stream_id
        fields = self._decode(block, stream_id)
        if priority is not None:
            fr.check_priority(stream_id, priority)
        if stream.state not in PEER_SENDING:
            raise _stream_closed(stream_id, "HEADERS after END_STREAM (§5.1 half-closed)")
        end = flags & _END_STREAM
        if not stream.head_received:
            self._on_response(stream, fields, end)
            return
        if not end:
            malformed(stream_id, "a second HEADERS without END_STREAM (§8.1)")
        headers = check_trailers(fields, stream_id)
        self._check_length(stream)
        self._events.append(TrailersReceived(stream_id, headers))
        self._end_remote(stream)

    def _on_response(self, stream: H2Stream, fields: list[Field], end: int) -> None:
        stream_id = stream.stream_id
        status, headers, length = check_response(fields, stream_id)
        if status < 200:
            if end:
                malformed(stream_id, "an informational response with END_STREAM (§8.1)")
            self._events.append(InformationalResponseReceived(stream_id, status, headers))
            return
        stream.head_received = True
        if stream.no_body or status in NO_BODY_STATUSES:
            stream.no_body = True  # §8.1.1: content-length describes a body never sent
        else:
            stream.expected_length = length
        if end:
            self._check_length(stream)
        self._events.append(ResponseReceived(stream_id, status, headers, "2", bool(end)))
        if end:
            self._end_remote(stream)

    # -- connection-level frames: SETTINGS, PING, GOAWAY, WINDOW_UPDATE (§6.5-§6.9) ---------

    def _on_settings(self, flags: int, stream_id: int, payload: memoryview) -> None:
        pairs = fr.parse_settings(stream_id, flags, payload)
        if flags & fr.FLAG_ACK:
            self._apply_local(self.local.acknowledge())
            self._events.append(SettingsAcknowledged())
            return
        changes = self.peer.apply_received(pairs, sender_is_server=self.client_side)
        fr.write_settings_ack(self._out)  # §6.5.3: ACK once every value is processed
        self.flood.ack_queued()
        self._events.append(SettingsChanged(changes))
        window = changes.get(S.INITIAL_WINDOW_SIZE)
        if window is not None:
            # §6.9.2: every stream window moves by the difference, possibly below zero;
            # overflow past 2**31-1 is a connection FLOW_CONTROL_ERROR (SendWindow.adjust).
            delta = window[1] - window[0]
            for stream in self._streams.values():
                stream.outbound.adjust(delta)
            if delta > 0:
                self._events.append(WindowOpened(0, delta))
        table = changes.get(S.HEADER_TABLE_SIZE)
        if table is not None:
            self._encoder.set_max_table_size(min(table[1], self.max_encoder_table))

    def _apply_local(self, changes: dict[int, tuple[int, int]]) -> None:
        """Our SETTINGS were acknowledged: enforce them from now on (§6.5.3)."""
        window = changes.get(S.INITIAL_WINDOW_SIZE)
        if window is not None:
            delta = window[1] - window[0]
            for stream in self._streams.values():
                stream.inbound.adjust(delta)
        self._request_heads.clear()  # what is valid may have changed (limits, :protocol)
        table = changes.get(S.HEADER_TABLE_SIZE)
        if table is not None:
            self._decoder.max_allowed_table_size = table[1]
        list_size = changes.get(S.MAX_HEADER_LIST_SIZE)
        if list_size is not None and list_size[1] < UNLIMITED:
            self._decoder.max_header_list_size = list_size[1]
        self._reader.max_frame_size = self.local.highest(S.MAX_FRAME_SIZE)

    def _on_ping(self, flags: int, stream_id: int, payload: memoryview) -> None:
        data = fr.parse_ping(stream_id, payload)
        if flags & fr.FLAG_ACK:
            self._events.append(PingAcknowledged(data))
            return
        fr.write_ping(self._out, data, ack=True)  # §6.7: the same payload, ACK set
        self.flood.ack_queued()
        self._events.append(PingReceived(data))

    def _on_goaway(self, flags: int, stream_id: int, payload: memoryview) -> None:
        last, code, debug = fr.parse_goaway(stream_id, payload)
        count(self.tally.goaways_received, code)
        previous = self.goaway_received
        self.goaway_received = last if previous is None else min(previous, last)
        self._events.append(GoAwayReceived(last, code, debug))
        # §6.8: our streams above ``last`` were not processed; they may be retried.
        ours = 1 - self._peer_parity
        for stream in [s for s in self._streams.values() if s.stream_id > last]:
            if stream.stream_id & 1 == ours:
                stream.advance(StreamInput.RECV_RST)
                self._retire(stream, _RESET_RECEIVED)
                self._events.append(StreamReset(stream.stream_id, ErrorCode.REFUSED_STREAM))

    def _on_window_update(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id == 0:
            increment = fr.parse_window_update(0, payload)
            self._outbound.grow(increment)  # §6.9.1: overflow is a connection error
            self._events.append(WindowOpened(0, increment))
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise connection_error(f"WINDOW_UPDATE on idle stream {stream_id} (§5.1)")
            try:  # §5.1 closed: ignored, but a wrong length is still a connection error
                fr.parse_window_update(stream_id, payload)
            except RemoteProtocolError as exc:
                if not exc.stream_id:
                    raise
            return
        increment = fr.parse_window_update(stream_id, payload)
        stream.outbound.grow(increment)  # overflow: a stream FLOW_CONTROL_ERROR (§6.9.1)
        if stream.state in WE_SENDING:
            self._events.append(WindowOpened(stream_id, increment))

    def _on_rst_stream(self, flags: int, stream_id: int, payload: memoryview) -> None:
        code = fr.parse_rst_stream(stream_id, payload)
        count(self.tally.resets_received, code)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._is_idle(stream_id):
                raise connection_error(f"RST_STREAM on idle stream {stream_id} (§5.1)")
            return  # §5.1 closed: an RST_STREAM may cross our closing frame
        self.flood.reset()
        stream.advance(StreamInput.RECV_RST)
        self._retire(stream, _RESET_RECEIVED)
        self._events.append(StreamReset(stream_id, code))

    def _on_priority(self, flags: int, stream_id: int, payload: memoryview) -> None:
        # §5.3.2: priority signals are deprecated; checked for errors, then ignored.
        fr.parse_priority(stream_id, payload)


_Handler = Callable[[Receiver, int, int, memoryview], None]
_HANDLERS: Final[dict[int, _Handler]] = {
    int(frame_type): handler
    for frame_type, handler in {
        fr.FrameType.DATA: Receiver._on_data,
        fr.FrameType.HEADERS: Receiver._on_headers,
        fr.FrameType.PRIORITY: Receiver._on_priority,
        fr.FrameType.RST_STREAM: Receiver._on_rst_stream,
        fr.FrameType.SETTINGS: Receiver._on_settings,
        fr.FrameType.PUSH_PROMISE: Receiver._on_push_promise,
        fr.FrameType.PING: Receiver._on_ping,
        fr.FrameType.GOAWAY: Receiver._on_goaway,
        fr.FrameType.WINDOW_UPDATE: Receiver._on_window_update,
        fr.FrameType.CONTINUATION: Receiver._on_continuation,
    }.items()
}
