"""RFC 9113 §5 (h2spec 5.1-5.5): stream states, identifiers, concurrency, errors, extensions."""

from __future__ import annotations

import pytest

from caboose.core.events import (
    ConnectionTerminated,
    RequestReceived,
    SettingsChanged,
    StreamEnded,
    StreamReset,
)
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.stream import TRANSITIONS, H2Stream, StreamInput, StreamState
from caboose.errors import ErrorCode, LocalProtocolError

from .rawpeer import POST, REQUEST, RawClient, T, raw

S = StreamState
I = StreamInput  # noqa: E741

# --- §5.1 the state machine itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "final"),
    [
        ([I.RECV_HEADERS], S.OPEN),
        ([I.RECV_HEADERS, I.RECV_END_STREAM], S.HALF_CLOSED_REMOTE),
        ([I.RECV_HEADERS, I.RECV_END_STREAM, I.SEND_HEADERS, I.SEND_END_STREAM], S.CLOSED),
        ([I.SEND_HEADERS, I.SEND_END_STREAM], S.HALF_CLOSED_LOCAL),
        ([I.SEND_HEADERS, I.SEND_END_STREAM, I.RECV_HEADERS, I.RECV_END_STREAM], S.CLOSED),
        ([I.SEND_HEADERS, I.RECV_RST], S.CLOSED),
        ([I.RECV_HEADERS, I.SEND_RST], S.CLOSED),
        ([I.RECV_HEADERS, I.RECV_END_STREAM, I.RECV_RST], S.CLOSED),
        ([I.SEND_HEADERS, I.SEND_END_STREAM, I.SEND_RST], S.CLOSED),
    ],
)
def test_transitions_follow_the_diagram(inputs: list[StreamInput], final: StreamState) -> None:
    stream = H2Stream(1, 65_535, 65_535)
    for step in inputs:
        stream.advance(step)
    assert stream.state is final


@pytest.mark.parametrize(
    ("state", "step"),
    [
        (S.IDLE, I.SEND_END_STREAM),
        (S.IDLE, I.RECV_RST),
        (S.HALF_CLOSED_REMOTE, I.RECV_HEADERS),
        (S.HALF_CLOSED_REMOTE, I.RECV_END_STREAM),
        (S.HALF_CLOSED_LOCAL, I.SEND_HEADERS),
        (S.CLOSED, I.SEND_HEADERS),
        (S.CLOSED, I.RECV_HEADERS),
    ],
)
def test_edges_outside_the_diagram_are_refused(state: StreamState, step: StreamInput) -> None:
    stream = H2Stream(1, 65_535, 65_535)
    stream.state = state
    assert (state, step) not in TRANSITIONS
    with pytest.raises(LocalProtocolError):
        stream.advance(step)


# --- §5.1 idle ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        RawClient.data(1, b"test", end_stream=True),
        RawClient.rst(1),
        RawClient.window_update(1, 100),
        raw(T.CONTINUATION, fr.FLAG_END_HEADERS, 1, b"\x82"),
    ],
    ids=["DATA", "RST_STREAM", "WINDOW_UPDATE", "CONTINUATION"],
)
def test_idle_frames_other_than_headers_or_priority(frame: bytes) -> None:
    client = RawClient().handshake()
    client.send(frame)
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR, last_stream_id=0)


def test_idle_priority_is_accepted_and_does_not_open() -> None:
    client = RawClient().handshake()
    assert client.send(client.priority(5, 0, 32)) == []
    client.expect_nothing()
    assert client.conn.stream_state(5) is S.IDLE
    assert isinstance(client.send(client.headers(5))[0], RequestReceived)


# --- §5.1 half-closed (remote) ----------------------------------------------------------------


def _half_closed_remote() -> RawClient:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=True))
    assert client.conn.stream_state(1) is S.HALF_CLOSED_REMOTE
    client.events.clear()
    return client


def test_half_closed_remote_data_is_stream_closed() -> None:
    client = _half_closed_remote()
    client.send(client.data(1, b"test", end_stream=True))
    assert client.events == [StreamReset(1, ErrorCode.STREAM_CLOSED, remote=False)]
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_half_closed_remote_headers_is_stream_closed() -> None:
    client = _half_closed_remote()
    client.send(client.headers(1, end_stream=True))
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_half_closed_remote_continuation_is_a_protocol_error() -> None:
    client = _half_closed_remote()
    client.send(client.continuation(1, client.encode(REQUEST)))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR, last_stream_id=1)


def test_half_closed_remote_accepts_window_update_priority_and_rst() -> None:
    client = _half_closed_remote()
    client.send(client.window_update(1, 10), client.priority(1, 0, 10))
    client.expect_nothing()
    assert client.send(client.rst(1, ErrorCode.CANCEL)) == [StreamReset(1, ErrorCode.CANCEL)]
    assert client.conn.stream_state(1) is S.CLOSED


# --- §5.1 closed ----------------------------------------------------------------------------------


def _reset_by_peer() -> RawClient:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    assert client.send(client.rst(1)) == [StreamReset(1, ErrorCode.CANCEL)]
    return client


def test_data_after_peer_rst_is_stream_closed() -> None:
    client = _reset_by_peer()
    client.send(client.data(1, b"test", end_stream=True))
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_headers_after_peer_rst_is_stream_closed() -> None:
    client = _reset_by_peer()
    client.send(client.headers(1))
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_continuation_after_peer_rst_is_a_protocol_error() -> None:
    client = _reset_by_peer()
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_priority_window_update_and_rst_after_peer_rst_are_ignored() -> None:
    client = _reset_by_peer()
    assert client.send(client.priority(1), client.window_update(1, 5), client.rst(1)) == []
    client.expect_nothing()


def _ended_both_ways() -> RawClient:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=True))
    client.conn.send_head(1, 200, [], end_stream=True)
    assert client.conn.stream_state(1) is S.CLOSED
    client.output()
    return client


def test_data_on_a_closed_stream_is_a_connection_stream_closed() -> None:
    client = _ended_both_ways()
    client.send(client.data(1, b"test", end_stream=True))
    client.expect_connection_error(ErrorCode.STREAM_CLOSED, last_stream_id=1)


def test_headers_on_a_closed_stream_is_a_connection_stream_closed() -> None:
    client = _ended_both_ways()
    client.send(client.headers(1))
    client.expect_connection_error(ErrorCode.STREAM_CLOSED)


def test_continuation_on_a_closed_stream_is_a_protocol_error() -> None:
    client = _ended_both_ways()
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_window_update_rst_priority_on_a_closed_stream_are_ignored() -> None:
    client = _ended_both_ways()
    assert client.send(client.window_update(1, 1), client.rst(1), client.priority(1)) == []
    client.expect_nothing()


def test_frames_after_our_rst_are_ignored_but_counted() -> None:
    client = RawClient(connection_window=65_535).handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.conn.reset_stream(1, ErrorCode.CANCEL)
    assert client.output() == [(T.RST_STREAM, 0, 1, ErrorCode.CANCEL.to_bytes(4, "big"))]
    # §5.1: frames the peer sent before seeing our RST_STREAM are dropped quietly...
    chunk = b"x" * 16_384
    assert client.send(client.data(1, chunk), client.data(1, chunk), client.data(1, chunk)) == []
    assert client.send(client.headers(1, [(b"x-trailer", b"1")], end_stream=True)) == []
    # ...but their DATA still counts against, and is credited back to, the connection window.
    frames = client.output()
    assert [f[:3] for f in frames] == [(T.WINDOW_UPDATE, 0, 0)]
    client.expect_alive()


def test_frames_after_a_stream_error_are_ignored() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, [*POST, (b"connection", b"close")], end_stream=False))
    client.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)
    assert client.send(client.data(1, b"late", end_stream=True)) == []
    client.expect_nothing()


# --- §5.1.1 stream identifiers --------------------------------------------------------------------


def test_even_stream_id_from_a_client() -> None:
    client = RawClient().handshake()
    client.send(client.headers(2))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_stream_id_smaller_than_a_previous_one() -> None:
    client = RawClient().handshake()
    client.send(client.headers(5))
    client.send(client.headers(3))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR, last_stream_id=5)


def test_skipped_stream_ids_are_closed() -> None:
    client = RawClient().handshake()
    client.send(client.headers(7))
    assert client.conn.stream_state(3) is S.CLOSED
    assert client.send(client.window_update(3, 1)) == []  # closed, not idle
    client.send(client.data(3, b"x"))
    client.expect_connection_error(ErrorCode.STREAM_CLOSED)


def test_client_role_stream_ids_are_odd_and_increasing() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    assert client.get_next_available_stream_id() == 1
    client.send_headers(1, REQUEST, end_stream=True)
    assert client.get_next_available_stream_id() == 3
    for bad in (1, 2, 4):
        with pytest.raises(LocalProtocolError):
            client.send_headers(bad, REQUEST, end_stream=True)
    client.send_headers(7, REQUEST, end_stream=True)  # skipping is allowed
    assert client.stream_state(5) is S.CLOSED
    assert client.get_next_available_stream_id() == 9


def test_client_role_stream_ids_run_out() -> None:
    client = H2Connection(client_side=True)
    client.send_headers(2**31 - 1, REQUEST, end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.get_next_available_stream_id()


def test_server_role_does_not_open_streams() -> None:
    server = H2Connection(client_side=False)
    with pytest.raises(LocalProtocolError):
        server.get_next_available_stream_id()


# --- §5.1.2 stream concurrency -------------------------------------------------------------------


def test_streams_beyond_max_concurrent_are_refused() -> None:
    client = RawClient().handshake([(0x4, 0)])
    for stream_id in range(1, 201, 2):
        assert isinstance(client.send(client.headers(stream_id))[0], RequestReceived)
    assert client.send(client.headers(201)) == []
    client.expect_stream_error(201, ErrorCode.REFUSED_STREAM)
    # Finishing one stream makes room for the next.
    client.conn.reset_stream(1)
    assert isinstance(client.send(client.headers(203))[0], RequestReceived)


def test_client_role_respects_the_server_limit() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    client.receive_data(RawClient.settings((0x3, 1)))
    client.send_headers(1, REQUEST, end_stream=True)
    with pytest.raises(LocalProtocolError) as info:
        client.send_headers(3, REQUEST, end_stream=True)
    assert info.value.code == ErrorCode.REFUSED_STREAM


# --- §5.3 priority (deprecated but checked) -------------------------------------------------------


def test_headers_depending_on_itself() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, priority=fr.Priority(1, 16, False)))
    client.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_priority_depending_on_itself() -> None:
    client = RawClient().handshake()
    client.send(client.priority(3, depends_on=3))
    client.expect_stream_error(3, ErrorCode.PROTOCOL_ERROR)


def test_headers_with_priority_are_served() -> None:
    client = RawClient().handshake()
    events = client.send(client.headers(3, priority=fr.Priority(1, 256, True)))
    assert isinstance(events[0], RequestReceived) and isinstance(events[1], StreamEnded)


# --- §5.4 error handling --------------------------------------------------------------------------


def test_connection_error_names_the_last_processed_stream() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1), client.headers(3))
    client.send(raw(T.PING, 0, 3, bytes(8)))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR, last_stream_id=3)


def test_connection_error_keeps_earlier_events() -> None:
    client = RawClient().handshake()
    events = client.send(client.headers(1) + raw(T.PING, 0, 1, bytes(8)))
    assert [type(e) for e in events] == [RequestReceived, StreamEnded, ConnectionTerminated]


def test_commands_after_a_connection_error_raise() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1))
    client.send(raw(T.PING, 0, 3, bytes(8)))
    client.output()
    with pytest.raises(LocalProtocolError):
        client.conn.send_head(1, 200, [])
    assert client.conn.data_to_send() == b""


def test_peer_close_ends_the_connection() -> None:
    client = RawClient().handshake()
    events = client.send(b"")
    assert events == [ConnectionTerminated(ErrorCode.NO_ERROR, "the peer closed")]
    assert client.send(client.ping()) == []


# --- §5.5 extending HTTP/2 ------------------------------------------------------------------------


def test_unknown_extension_frame_inside_a_header_block() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(raw(0x16, 0, 0, bytes(8)))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_unknown_setting_is_ignored() -> None:
    client = RawClient().handshake()
    events = client.send(client.settings((0xFF, 1), (0x1234, 99)))
    assert events == [SettingsChanged({})]
    assert client.output() == [(T.SETTINGS, fr.FLAG_ACK, 0, b"")]


def test_closed_stream_memory_is_bounded() -> None:
    client = RawClient(closed_memory=4).handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.conn.reset_stream(1)
    for stream_id in range(3, 13, 2):  # five more closed streams push stream 1 out
        client.send(client.headers(stream_id))
        client.conn.send_head(stream_id, 204, [], end_stream=True)
    client.output()
    # Stream 1 is still known closed (not idle), only how it closed is forgotten.
    assert client.conn.stream_state(1) is S.CLOSED
    client.send(client.data(1, b"late"))
    client.expect_connection_error(ErrorCode.STREAM_CLOSED)
