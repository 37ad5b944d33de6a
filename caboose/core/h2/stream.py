"""HTTP/2 stream state (RFC 9113 §5.1): the state machine, per-stream windows and bookkeeping."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from caboose.errors import ErrorCode, LocalProtocolError

from .window import ReceiveWindow, SendWindow

# RFC 9110 §6.4.1: responses that never carry content, whatever their fields say.
NO_BODY_STATUSES: Final = frozenset({204, 304})


class StreamState(IntEnum):
    """§5.1 stream states. IntEnum so that table keys hash at C speed.

    The two "reserved" states exist only with server push, which caboose never uses: our
    server does not push and our client sends SETTINGS_ENABLE_PUSH = 0 (§8.4), so a
    PUSH_PROMISE is a connection error and no stream is ever reserved.
    """

    IDLE = 0
    OPEN = 1
    HALF_CLOSED_LOCAL = 2
    HALF_CLOSED_REMOTE = 3
    CLOSED = 4


class StreamInput(IntEnum):
    """What happens to a stream: a frame (flag) sent or received."""

    SEND_HEADERS = 0
    RECV_HEADERS = 1
    SEND_END_STREAM = 2
    RECV_END_STREAM = 3
    SEND_RST = 4
    RECV_RST = 5


# RFC 9113 §5.1, Figure 2 (push-related edges left out, see StreamState):
#
#                              +--------+
#                      send PP |        | recv PP
#                     ,--------+  idle  +--------.
#                    /         |        |         \
#                   v          +--------+          v
#            +----------+          |           +----------+
#            |          |          | send H /  |          |
#     ,------+ reserved |          | recv H    | reserved +------.
#     |      | (local)  |          |           | (remote) |      |
#     |      +---+------+          v           +------+---+      |
#     |          |             +--------+             |          |
#     |          |     recv ES |        | send ES     |          |
#     |   send H |     ,-------+  open  +-------.     | recv H   |
#     |          |    /        |        |        \    |          |
#     |          v   v         +---+----+         v   v          |
#     |      +----------+          |           +----------+      |
#     |      |   half-  |          |           |   half-  |      |
#     |      |  closed  |          | send R /  |  closed  |      |
#     |      | (remote) |          | recv R    | (local)  |      |
#     |      +----+-----+          |           +-----+----+      |
#     |           |                |                 |           |
#     |           | send ES /      |       recv ES / |           |
#     |           |  send R /      v        send R / |           |
#     |           |  recv R    +--------+   recv R   |           |
#     | send R /  `----------->|        |<-----------'  send R / |
#     | recv R                 | closed |               recv R   |
#     `----------------------->|        |<-----------------------'
#                              +--------+
#
# HEADERS without END_STREAM keep a stream where it is once open (1xx heads, the final head);
# a HEADERS frame carrying END_STREAM is applied as HEADERS then END_STREAM.
_S = StreamState
_I = StreamInput
TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.IDLE, _I.SEND_HEADERS): _S.OPEN,
    (_S.IDLE, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.SEND_HEADERS): _S.OPEN,
    (_S.OPEN, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.SEND_END_STREAM): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.RECV_END_STREAM): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _I.SEND_RST): _S.CLOSED,
    (_S.OPEN, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_HEADERS): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_HEADERS): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.RECV_RST): _S.CLOSED,
}

# States in which the peer may still send DATA / HEADERS (§5.1, §6.1), and we may.
PEER_SENDING: Final = frozenset({_S.OPEN, _S.HALF_CLOSED_LOCAL})
WE_SENDING: Final = frozenset({_S.OPEN, _S.HALF_CLOSED_REMOTE})


class H2Stream:
    """One stream's state, flow-control windows and message bookkeeping."""

    __slots__ = (
        "announced",
        "expected_length",
        "head_received",
        "head_sent",
        "inbound",
        "no_body",
        "outbound",
        "received_length",
        "state",
        "stream_id",
        "unacked",
    )

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        self.outbound = SendWindow(send_window, stream_id=stream_id)
        self.inbound = ReceiveWindow(receive_window, stream_id=stream_id)
        # The peer's final (non-1xx) head arrived; a later HEADERS is a trailer section.
        self.head_received = False
        self.head_sent = False  # our final head went out; a later HEADERS carries trailers
        self.announced = False  # the application was told about the stream (it needs resets)
        self.expected_length = -1  # the peer's content-length (§8.1.1); -1: none declared
        self.received_length = 0  # DATA octets received, padding excluded
        self.no_body = False  # a response to HEAD (or 204/304): content-length is not checked
        self.unacked = 0  # flow-controlled octets received and not yet acknowledged

    def __repr__(self) -> str:
        return f"H2Stream({self.stream_id}, {self.state.name})"

    def advance(self, event: StreamInput) -> StreamState:
        """Apply one §5.1 transition; an edge not in the diagram is our misuse."""
        try:
            self.state = state = TRANSITIONS[self.state, event]
        except KeyError:
            raise LocalProtocolError(
                f"stream {self.stream_id}: {event.name} not allowed in state {self.state.name}",
                code=ErrorCode.STREAM_CLOSED,
                stream_id=self.stream_id,
            ) from None
        return state


class ClosedStreams:
    """A bounded memory of how recently closed streams ended, oldest forgotten first.

    §5.1 tells apart frames on a stream we reset (ignored: the peer may have sent them before
    it saw our RST_STREAM) from frames on a stream that ended or that the peer reset (its
    error). A stream not remembered but numbered below the highest one opened is closed too
    (§5.1.1); only the distinction is forgotten.
    """

    RESET_SENT: Final = 0
    RESET_RECEIVED: Final = 1
    ENDED: Final = 2

    __slots__ = ("_capacity", "_how")

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._how: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._how)

    def add(self, stream_id: int, how: int) -> None:
        how_map = self._how
        how_map[stream_id] = how
        if len(how_map) > self._capacity:
            del how_map[next(iter(how_map))]

    def get(self, stream_id: int) -> int | None:
        return self._how.get(stream_id)
