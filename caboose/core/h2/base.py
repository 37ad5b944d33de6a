"""State one HTTP/2 connection shares between its receive side and its commands (RFC 9113)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

from caboose.core.events import ConnectionTerminated, Event, StreamReset
from caboose.errors import ErrorCode, RemoteProtocolError

from . import frames as fr
from .hpack import Decoder, Encoder
from .limits import FloodGuard
from .settings import UNLIMITED, LocalSettings, SettingCode, Settings
from .stream import ClosedStreams, H2Stream, StreamInput, StreamState
from .validation import RequestHead
from .window import ReceiveWindow, SendWindow

S = SettingCode
SERVER_DEFAULTS: Final[dict[int, int]] = {
    S.MAX_CONCURRENT_STREAMS: 100,
    S.INITIAL_WINDOW_SIZE: 1 << 20,
    S.MAX_HEADER_LIST_SIZE: 65_536,
}
CLIENT_DEFAULTS: Final[dict[int, int]] = {
    S.ENABLE_PUSH: 0,  # §8.4: we never accept pushes
    S.INITIAL_WINDOW_SIZE: 1 << 20,
    S.MAX_HEADER_LIST_SIZE: 65_536,
}
DEFAULT_CONNECTION_WINDOW: Final = 16 << 20
MAX_STREAM_ID: Final = 2**31 - 1
_MAX_OWED_STREAMS: Final = 1024


class ConnectionState(Enum):
    """Where the connection is: waiting for the peer's SETTINGS (§3.4), open, or over."""

    AWAITING_SETTINGS = "awaiting settings"
    OPEN = "open"
    CLOSED = "closed"


def connection_error(
    message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR
) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=code, stream_id=0)


class PendingBlock:
    """A field block whose HEADERS frame lacked END_HEADERS (§4.3): CONTINUATIONs follow."""

    __slots__ = ("data", "flags", "priority", "stream_id")

    def __init__(
        self, stream_id: int, flags: int, priority: fr.Priority | None, fragment: memoryview
    ) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.priority = priority
        self.data = bytearray(fragment)


class FrameTally:
    """RST_STREAM and GOAWAY frames sent and received, by error code: plain counts a metrics
    exporter may read (these frames are rare, so counting them costs the requests nothing)."""

    __slots__ = ("goaways_received", "goaways_sent", "resets_received", "resets_sent")

    def __init__(self) -> None:
        self.resets_sent: dict[int, int] = {}
        self.resets_received: dict[int, int] = {}
        self.goaways_sent: dict[int, int] = {}
        self.goaways_received: dict[int, int] = {}


def count(tally: dict[int, int], code: int) -> None:
    tally[code] = tally.get(code, 0) + 1


class ConnectionBase:
    """Settings, windows, streams, output buffer, and the §5.4 error handling."""

    def __init__(
        self,
        client_side: bool,
        *,
        local_settings: Mapping[int, int] | None = None,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        flood: FloodGuard | None = None,
        closed_memory: int = 1024,
    ) -> None:
        self.client_side = client_side
        self.state = ConnectionState.AWAITING_SETTINGS
        self.local = LocalSettings(is_server=not client_side)  # ours, applied when ACKed
        self.peer = Settings()  # the peer's, applied as received
        self.flood = flood if flood is not None else FloodGuard()
        defaults = CLIENT_DEFAULTS if client_side else SERVER_DEFAULTS
        self._wanted = {**defaults, **(local_settings or {})}
        list_size = self._wanted.get(S.MAX_HEADER_LIST_SIZE, 65_536)
        # §6.10 / CVE-2024-27316: the most header-block octets we buffer before decoding.
        self.max_header_block = max(4 * list_size, 65_536)
        self._connection_window = connection_window
        self.max_encoder_table = 4096  # the most HPACK table we keep for the peer's decoder
        self._out = bytearray()
        # Whole buffers queued ahead of _out, in wire order: large immutable DATA payloads ride
        # here by reference, beside the frame headers before them (see send_data).
        self._buffers: list[fr.BytesLike] = []
        self._events: list[Event] = []
        self._reader = fr.FrameReader(expect_preface=not client_side)
        self._decoder = Decoder(max_header_list_size=list_size)
        # Validated request heads by block bytes, for blocks that left the HPACK table as it
        # was: clients repeat them byte for byte (h2load, gRPC channels), so the decode and
        # the §8 checks happen once. Entries carry the table generation they are valid for.
        self._request_heads: dict[bytes, tuple[int, RequestHead]] = {}
        self._encoder = Encoder()
        self._streams: dict[int, H2Stream] = {}
        self._closed = ClosedStreams(closed_memory)
        self._closed_unacked: dict[int, int] = {}  # ended streams whose data is still unread
        self._outbound = SendWindow(stream_id=0)  # the connection windows (§6.9.1)
        self._inbound = ReceiveWindow(stream_id=0)
        self._peer_parity = 0 if client_side else 1  # §5.1.1: clients odd, servers even
        self._highest_peer_id = 0
        self._next_local_id = 1 if client_side else 2
        self._max_peer_streams: int = UNLIMITED
        self._extended_connect = False  # we sent ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 §3)
        self._block: PendingBlock | None = None  # a header block awaiting CONTINUATION
        self.goaway_sent: int | None = None  # the last-stream-id we announced
        self.goaway_received: int | None = None
        self.tally = FrameTally()
        self._initiated = False

    # -- status ----------------------------------------------------------------------------

    @property
    def settings_ack_pending(self) -> bool:
        """We sent SETTINGS the peer has not acknowledged: time it out (§6.5.3)."""
        return self.local.unacknowledged > 0

    @property
    def open_streams(self) -> int:
        """Streams not yet closed (open or half-closed)."""
        return len(self._streams)

    @property
    def highest_peer_stream_id(self) -> int:
        return self._highest_peer_id

    def stream_state(self, stream_id: int) -> StreamState:
        """A stream's §5.1 state, for diagnostics and tests."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        return StreamState.IDLE if self._is_idle(stream_id) else StreamState.CLOSED

    def initiate(self) -> None:
        """Queue our connection preface (§3.4): client magic, SETTINGS, connection credit."""
        if self._initiated:
            return
        self._initiated = True
        if self.client_side:
            self._out += fr.PREFACE
        self._send_settings(self._wanted)
        increment = self._inbound.set_target(self._connection_window)
        if increment:  # §6.9.2: only WINDOW_UPDATE grows the connection window
            fr.write_window_update(self._out, 0, increment)

    def _send_settings(self, values: Mapping[int, int]) -> None:
        pairs = self.local.propose(values)
        fr.write_settings(self._out, pairs)
        # Accept larger frames as soon as we announce them; shrink only once acknowledged.
        self._reader.max_frame_size = self.local.highest(S.MAX_FRAME_SIZE)
        self._max_peer_streams = self.local.latest(S.MAX_CONCURRENT_STREAMS)
        self._extended_connect = self.local.latest(S.ENABLE_CONNECT_PROTOCOL) == 1

    # -- helpers -----------------------------------------------------------------------------

    def _is_idle(self, stream_id: int) -> bool:
        """§5.1: a stream id not used yet (closed ones lie at or below the highest used)."""
        if stream_id & 1 == self._peer_parity:
            return stream_id > self._highest_peer_id
        return stream_id >= self._next_local_id

    def _end_local(self, stream: H2Stream) -> None:
        if stream.advance(StreamInput.SEND_END_STREAM) is StreamState.CLOSED:
            self._retire(stream, ClosedStreams.ENDED)

    def _retire(self, stream: H2Stream, how: int) -> None:
        """Forget a closed stream; credit what the application will now never acknowledge."""
        stream_id = stream.stream_id
        stream.state = StreamState.CLOSED
        del self._streams[stream_id]
        self._closed.add(stream_id, how)
        unacked = stream.unacked
        if unacked:
            if how == ClosedStreams.ENDED:
                # The application still reads this body and will acknowledge it.
                owed = self._closed_unacked
                owed[stream_id] = unacked
                if len(owed) > _MAX_OWED_STREAMS:  # one that never acknowledges
                    self._credit_connection(owed.pop(next(iter(owed))))
            else:
                self._credit_connection(unacked)

    def _credit_connection(self, size: int) -> None:
        increment = self._inbound.consume(size)
        if increment:
            fr.write_window_update(self._out, 0, increment)

    def _goaway_last_id(self) -> int:
        last = self._highest_peer_id
        return last if self.goaway_sent is None else min(last, self.goaway_sent)

    def _connection_error(self, code: int, reason: str) -> ConnectionTerminated:
        """§5.4.1: queue GOAWAY naming the last stream we processed, then close."""
        last = self._goaway_last_id()
        fr.write_goaway(self._out, last, code, reason.encode("utf-8", "replace")[:256])
        count(self.tally.goaways_sent, code)
        self.goaway_sent = last
        self.state = ConnectionState.CLOSED
        return ConnectionTerminated(code, reason)

    def _stream_error(self, stream_id: int, code: int) -> None:
        """§5.4.2: RST_STREAM, and tell the application if it knew the stream."""
        self.flood.reset()
        fr.write_rst_stream(self._out, stream_id, code)
        count(self.tally.resets_sent, code)
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._is_idle(stream_id):
                self._closed.add(stream_id, ClosedStreams.RESET_SENT)
            return
        stream.advance(StreamInput.SEND_RST)
        self._retire(stream, ClosedStreams.RESET_SENT)
        if stream.announced:
            self._events.append(StreamReset(stream_id, code, False))
