"""RFC 9113 §6 and §7 (h2spec 6.1-6.10, 7): each frame type's rules, flow control, SETTINGS."""

from __future__ import annotations

import pytest

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    RequestReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    WindowOpened,
)
from caboose.core.h2 import frames as fr
from caboose.core.h2.limits import FloodGuard
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode, LocalProtocolError

from .rawpeer import POST, REQUEST, RawClient, T, raw

W = SettingCode.INITIAL_WINDOW_SIZE

# --- §6.1 DATA ------------------------------------------------------------------------------------


def test_data_on_stream_0() -> None:
    client = RawClient().handshake()
    client.send(client.data(0, b"test"))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_data_on_a_half_closed_remote_stream() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=True))
    client.send(client.data(1, b"test"))
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_data_with_invalid_pad_length() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(raw(T.DATA, fr.FLAG_PADDED | fr.FLAG_END_STREAM, 1, b"\x06test"))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_padded_data_counts_padding_for_flow_control() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    events = client.send(client.data(1, b"abc", end_stream=True, pad_length=10))
    assert events[0] == DataReceived(1, b"abc", 14, True)


# --- §6.2 HEADERS ---------------------------------------------------------------------------------


def test_headers_on_stream_0() -> None:
    client = RawClient().handshake()
    client.send(client.headers(0))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_headers_with_invalid_pad_length() -> None:
    client = RawClient().handshake()
    block = client.encode(REQUEST)
    flags = fr.FLAG_PADDED | fr.FLAG_END_HEADERS | fr.FLAG_END_STREAM
    client.send(raw(T.HEADERS, flags, 1, bytes([len(block) + 1]) + block))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_padded_headers_are_served() -> None:
    client = RawClient().handshake()
    events = client.send(client.headers(1, pad_length=20))
    assert isinstance(events[0], RequestReceived)


def test_headers_without_end_headers_then_priority() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False), client.priority(1))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


# --- §6.3 PRIORITY --------------------------------------------------------------------------------


def test_priority_on_stream_0() -> None:
    client = RawClient().handshake()
    client.send(client.priority(0))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_priority_with_wrong_length() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.send(raw(T.PRIORITY, 0, 1, bytes(4)))
    client.expect_stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


# --- §6.4 RST_STREAM ------------------------------------------------------------------------------


def test_rst_stream_on_stream_0() -> None:
    client = RawClient().handshake()
    client.send(client.rst(0))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_rst_stream_on_an_idle_stream() -> None:
    client = RawClient().handshake()
    client.send(client.rst(1))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_rst_stream_with_wrong_length() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.send(raw(T.RST_STREAM, 0, 1, bytes(3)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_rst_stream_closes_and_tells_the_application() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    assert client.send(client.rst(1, ErrorCode.CANCEL)) == [StreamReset(1, ErrorCode.CANCEL)]
    with pytest.raises(LocalProtocolError):
        client.conn.send_head(1, 200, [])


# --- §6.5 SETTINGS --------------------------------------------------------------------------------


def test_settings_ack_with_payload() -> None:
    client = RawClient().handshake()
    client.send(raw(T.SETTINGS, fr.FLAG_ACK, 0, bytes(6)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_settings_on_a_stream() -> None:
    client = RawClient().handshake()
    client.send(raw(T.SETTINGS, 0, 1, b""))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_settings_with_bad_length() -> None:
    client = RawClient().handshake()
    client.send(raw(T.SETTINGS, 0, 0, bytes(3)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    ("pair", "code"),
    [
        ((SettingCode.ENABLE_PUSH, 2), ErrorCode.PROTOCOL_ERROR),
        ((W, 2**31), ErrorCode.FLOW_CONTROL_ERROR),
        ((SettingCode.MAX_FRAME_SIZE, 16_383), ErrorCode.PROTOCOL_ERROR),
        ((SettingCode.MAX_FRAME_SIZE, 2**24), ErrorCode.PROTOCOL_ERROR),
        ((SettingCode.ENABLE_CONNECT_PROTOCOL, 2), ErrorCode.PROTOCOL_ERROR),
    ],
)
def test_invalid_setting_values(pair: tuple[int, int], code: int) -> None:
    client = RawClient().handshake()
    client.send(client.settings(pair))
    client.expect_connection_error(code)


def test_settings_are_acknowledged_immediately() -> None:
    client = RawClient().handshake()
    client.send(client.settings((SettingCode.ENABLE_PUSH, 0)))
    assert client.output() == [(T.SETTINGS, fr.FLAG_ACK, 0, b"")]


def test_multiple_values_apply_in_order() -> None:
    client = RawClient().handshake()
    client.send(client.settings((W, 100), (W, 1)))
    client.send(client.headers(1))
    assert client.conn.sendable(1) == 1


def test_our_settings_apply_only_when_acknowledged() -> None:
    client = RawClient()
    client.send(fr.PREFACE + client.settings())
    assert client.conn.settings_ack_pending
    client.send(client.headers(1, POST, end_stream=False))
    # Before the ACK the peer may only use the RFC default stream window (65535).
    client.send(client.data(1, b"x" * 16_384), client.data(1, b"x" * 16_384))
    client.send(client.data(1, b"x" * 16_384), client.data(1, b"x" * 16_383))
    assert client.send(raw(T.SETTINGS, fr.FLAG_ACK, 0)) == [SettingsAcknowledged()]
    assert not client.conn.settings_ack_pending
    # Now the 1 MiB window is in force: far more may arrive.
    events = client.send(*[client.data(1, b"x" * 16_384) for _ in range(10)])
    assert len(events) == 10
    client.expect_alive()


def test_stream_window_overrun_before_ack() -> None:
    client = RawClient()
    client.send(fr.PREFACE + client.settings())
    client.send(client.headers(1, POST, end_stream=False))
    client.send(*[client.data(1, b"x" * 16_384) for _ in range(4)])
    client.expect_stream_error(1, ErrorCode.FLOW_CONTROL_ERROR)


def test_settings_timeout_hook() -> None:
    client = RawClient()
    client.send(fr.PREFACE + client.settings())
    assert client.conn.settings_ack_pending
    events = client.conn.settings_timeout()
    assert events == [ConnectionTerminated(ErrorCode.SETTINGS_TIMEOUT, "SETTINGS not acknowledged")]
    client.events += events
    client.expect_connection_error(ErrorCode.SETTINGS_TIMEOUT)


def test_settings_timeout_after_ack_does_nothing() -> None:
    client = RawClient().handshake()
    assert client.conn.settings_timeout() == []
    client.expect_nothing()


def test_peer_header_table_size_drives_our_encoder() -> None:
    client = RawClient().handshake([(SettingCode.HEADER_TABLE_SIZE, 0)])
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [(b"x-custom", b"value")], end_stream=True)
    block = client.output()[0][3]
    assert block[0] == 0x20  # §4.2: a size update to 0 opens the next block


# --- §6.6 PUSH_PROMISE ----------------------------------------------------------------------------


def test_push_promise_from_a_client() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    block = client.encode(REQUEST)
    client.send(raw(T.PUSH_PROMISE, fr.FLAG_END_HEADERS, 1, (2).to_bytes(4, "big") + block))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


# --- §6.7 PING ------------------------------------------------------------------------------------


def test_ping_is_answered_with_the_same_payload() -> None:
    client = RawClient().handshake()
    assert client.send(client.ping(b"h2spec!!")) == [PingReceived(b"h2spec!!")]
    assert client.output() == [(T.PING, fr.FLAG_ACK, 0, b"h2spec!!")]


def test_ping_ack_is_not_answered() -> None:
    client = RawClient().handshake()
    client.conn.ping(b"ourping!")
    client.output()
    assert client.send(client.ping(b"ourping!", ack=True)) == [PingAcknowledged(b"ourping!")]
    assert client.output() == []


def test_ping_on_a_stream() -> None:
    client = RawClient().handshake()
    client.send(raw(T.PING, 0, 1, bytes(8)))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_ping_with_wrong_length() -> None:
    client = RawClient().handshake()
    client.send(raw(T.PING, 0, 0, bytes(6)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


# --- §6.8 GOAWAY ----------------------------------------------------------------------------------


def test_goaway_on_a_stream() -> None:
    client = RawClient().handshake()
    client.send(raw(T.GOAWAY, 0, 1, bytes(8)))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_goaway_received_is_reported() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=True))
    payload = (1).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"bye"
    assert client.send(raw(T.GOAWAY, 0, 0, payload)) == [GoAwayReceived(1, 0, b"bye")]
    client.conn.send_head(1, 200, [], end_stream=True)  # stream 1 still completes
    assert client.conn.open_streams == 0


def test_streams_above_our_goaway_are_ignored() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.conn.goaway()
    frames = client.output()
    assert frames == [(T.GOAWAY, 0, 0, (1).to_bytes(4, "big") + bytes(4))]
    # Stream 3 was not processed; its frames are dropped, its HPACK block still decoded.
    assert client.send(client.headers(3, [*POST, (b"x-new", b"1")], end_stream=False)) == []
    assert client.send(client.data(3, b"ignored", end_stream=True)) == []
    assert client.send(client.data(1, b"body", end_stream=True))[0] == DataReceived(
        1, b"body", 4, True
    )


def test_goaway_last_id_cannot_grow() -> None:
    client = RawClient().handshake()
    client.conn.goaway(last_stream_id=2**31 - 1)
    client.conn.goaway(last_stream_id=0)
    with pytest.raises(LocalProtocolError):
        client.conn.goaway(last_stream_id=5)


def test_goaway_with_an_error_closes() -> None:
    client = RawClient().handshake()
    client.conn.goaway(ErrorCode.INTERNAL_ERROR, debug=b"oops")
    assert client.output() == [(T.GOAWAY, 0, 0, bytes(4) + (2).to_bytes(4, "big") + b"oops")]
    assert client.send(client.headers(1)) == []


def test_goaway_below_open_streams_drops_them() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False), client.headers(3, end_stream=False))
    events = client.conn.goaway(last_stream_id=1)
    assert events == [StreamReset(3, ErrorCode.REFUSED_STREAM, remote=False)]
    assert client.conn.open_streams == 1


# --- §6.9 WINDOW_UPDATE and flow control ----------------------------------------------------------


def test_window_update_of_zero_on_the_connection() -> None:
    client = RawClient().handshake()
    client.send(client.window_update(0, 0))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_window_update_of_zero_on_a_stream() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.send(client.window_update(1, 0))
    client.expect_stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_window_update_with_wrong_length() -> None:
    client = RawClient().handshake()
    client.send(raw(T.WINDOW_UPDATE, 0, 0, bytes(3)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_window_update_overflowing_the_connection_window() -> None:
    client = RawClient().handshake()
    client.send(client.window_update(0, 2**31 - 1))
    client.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_window_update_overflowing_a_stream_window() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.send(client.window_update(1, 2**31 - 1))
    client.expect_stream_error(1, ErrorCode.FLOW_CONTROL_ERROR)


def test_window_update_opens_sending() -> None:
    client = RawClient().handshake([(W, 1)])
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [])
    assert client.conn.sendable(1) == 1
    client.conn.send_data(1, b"a")
    with pytest.raises(LocalProtocolError):
        client.conn.send_data(1, b"b")
    assert client.send(client.window_update(1, 5)) == [WindowOpened(1, 5)]
    assert client.conn.sendable(1) == 5
    frames = client.output()
    assert (T.DATA, 0, 1, b"a") in frames


def test_connection_window_limits_all_streams() -> None:
    client = RawClient().handshake([(W, 1_000_000)])
    client.send(client.headers(1), client.headers(3))
    for stream_id in (1, 3):
        client.conn.send_head(stream_id, 200, [])
    client.conn.send_data(1, b"x" * 65_000)
    assert client.conn.sendable(3) == 535
    assert client.send(client.window_update(0, 1000)) == [WindowOpened(0, 1000)]
    assert client.conn.sendable(3) == 1535


def test_data_overrunning_the_connection_window() -> None:
    client = RawClient(connection_window=65_535).handshake()
    for stream_id in (1, 3, 5, 7, 9):
        client.send(client.headers(stream_id, POST, end_stream=False))
        client.send(client.data(stream_id, b"x" * 13_107))
    client.send(client.data(9, b"xx"))
    client.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_acknowledge_credits_stream_and_connection() -> None:
    client = RawClient(connection_window=65_535).handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.data(1, b"x" * 16_384), client.data(1, b"x" * 16_384))
    client.output()
    client.conn.acknowledge(1, 32_768)
    frames = client.output()
    # The connection (target 65535) crosses half its window; the 1 MiB stream window not yet.
    assert frames == [(T.WINDOW_UPDATE, 0, 0, (32_768).to_bytes(4, "big"))]


def test_acknowledge_cannot_credit_more_than_received() -> None:
    client = RawClient(connection_window=65_535).handshake()
    client.send(client.headers(1, POST, end_stream=False), client.data(1, b"x" * 10))
    client.conn.acknowledge(1, 1_000_000)
    client.conn.acknowledge(99, 1_000_000)
    assert client.output() == []


def test_setting_initial_window_size_after_headers() -> None:
    client = RawClient().handshake([(W, 0)])
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [])
    assert client.conn.sendable(1) == 0
    events = client.send(client.settings((W, 1)))
    assert WindowOpened(0, 1) in events
    assert client.conn.sendable(1) == 1


def test_negative_window_is_tracked() -> None:
    client = RawClient().handshake([(W, 3)])
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [])
    client.conn.send_data(1, b"abc")
    client.send(client.settings((W, 2)))
    assert client.conn.sendable(1) == 0  # the window is -1
    client.send(client.window_update(1, 2))
    assert client.conn.sendable(1) == 1


def test_initial_window_size_overflowing_a_stream_window() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    client.send(client.window_update(1, 2**31 - 1 - 65_535))
    client.send(client.settings((W, 65_536)))
    client.expect_connection_error(ErrorCode.FLOW_CONTROL_ERROR)


# --- §6.10 CONTINUATION ---------------------------------------------------------------------------


def test_multiple_continuations_are_accepted() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(client.continuation(1, client.encode([(b"x-dummy1", b"1")]), end_headers=False))
    events = client.send(client.continuation(1, client.encode([(b"x-dummy2", b"2")])))
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers == [(b"x-dummy1", b"1"), (b"x-dummy2", b"2")]
    assert events[1] == StreamEnded(1)


def test_continuation_followed_by_another_frame() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False, end_headers=False))
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")]), end_headers=False))
    client.send(client.data(1, b"test", end_stream=True))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_on_stream_0() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(client.continuation(0, client.encode([(b"x-dummy", b"1")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_after_end_headers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1))
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_after_a_continuation_with_end_headers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")])))
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"2")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_after_data() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.data(1, b"test", end_stream=True))
    client.send(client.continuation(1, client.encode([(b"x-dummy", b"1")])))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_continuation_flood_by_size() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    chunk = b"\x00" * 16_384
    for _ in range(client.conn.max_header_block // len(chunk) + 1):
        client.send(client.continuation(1, chunk, end_headers=False))
    client.expect_connection_error(ErrorCode.ENHANCE_YOUR_CALM)


def test_continuation_flood_of_empty_frames() -> None:
    client = RawClient(flood=FloodGuard(max_empty_frames=50)).handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(*[client.continuation(1, b"", end_headers=False) for _ in range(51)])
    client.expect_connection_error(ErrorCode.ENHANCE_YOUR_CALM)


# --- §7 error codes -------------------------------------------------------------------------------


def test_unknown_error_code_in_goaway() -> None:
    client = RawClient().handshake()
    payload = bytes(4) + (0xFF).to_bytes(4, "big")
    assert client.send(raw(T.GOAWAY, 0, 0, payload)) == [GoAwayReceived(0, 0xFF, b"")]
    client.expect_alive()


def test_unknown_error_code_in_rst_stream() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False))
    assert client.send(client.rst(1, 0xFF)) == [StreamReset(1, 0xFF)]
    client.expect_alive()
