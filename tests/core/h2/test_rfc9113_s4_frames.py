"""RFC 9113 §4 (h2spec 4.1-4.3) and the HPACK error cases (h2spec hpack/) at connection level."""

from __future__ import annotations

import pytest

from caboose.core.events import DataReceived, RequestReceived, StreamEnded
from caboose.core.h2 import frames as fr
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode

from .rawpeer import POST, REQUEST, RawClient, T, raw

# --- §4.1 frame format ------------------------------------------------------------------------


def test_unknown_frame_type_is_ignored() -> None:
    client = RawClient().handshake()
    assert client.send(raw(0x16, 0, 0, bytes(8))) == []
    client.expect_nothing()


def test_unknown_frame_type_on_a_stream_is_ignored() -> None:
    client = RawClient().handshake()
    assert client.send(raw(0xFE, 0xFF, 7, b"abc")) == []
    client.expect_nothing()


def test_undefined_flags_are_ignored() -> None:
    client = RawClient().handshake()
    client.send(raw(T.PING, 0x16 & ~fr.FLAG_ACK, 0, bytes(8)))
    assert (T.PING, fr.FLAG_ACK, 0, bytes(8)) in client.output()


def test_reserved_bit_is_ignored() -> None:
    client = RawClient().handshake()
    frame = bytearray(raw(T.PING, 0, 0, bytes(8)))
    frame[5] |= 0x80  # R bit of the stream identifier
    client.send(bytes(frame))
    assert (T.PING, fr.FLAG_ACK, 0, bytes(8)) in client.output()


def test_reserved_bit_on_headers_stream_id() -> None:
    client = RawClient().handshake()
    frame = bytearray(client.headers(1))
    frame[5] |= 0x80
    events = client.send(bytes(frame))
    assert isinstance(events[0], RequestReceived) and events[0].stream_id == 1


# --- §4.2 frame size --------------------------------------------------------------------------


def test_data_of_2_to_the_14_octets_is_accepted() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    events = client.send(client.data(1, b"x" * 16_384, end_stream=True))
    assert isinstance(events[0], DataReceived) and len(events[0].data) == 16_384
    assert isinstance(events[1], StreamEnded)


def test_data_above_max_frame_size_is_a_frame_size_error() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.data(1, b"x" * 16_385, end_stream=True))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR, last_stream_id=1)


def test_headers_above_max_frame_size_is_a_connection_error() -> None:
    client = RawClient().handshake()
    big = [*REQUEST, *[(b"x-dummy%d" % i, b"v" * 4000) for i in range(5)]]
    client.send(client.headers(1, big, block=client.encoder.encode(big, huffman=False)))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_larger_frames_accepted_once_we_announce_them() -> None:
    client = RawClient().handshake()
    client.conn.update_settings({SettingCode.MAX_FRAME_SIZE: 32_768})
    client.output()
    client.send(client.headers(1, POST, end_stream=False))
    events = client.send(client.data(1, b"x" * 30_000, end_stream=True))
    assert isinstance(events[0], DataReceived) and len(events[0].data) == 30_000


def test_smaller_max_frame_size_applies_only_after_ack() -> None:
    client = RawClient(local_settings={SettingCode.MAX_FRAME_SIZE: 32_768}).handshake()
    client.conn.update_settings({SettingCode.MAX_FRAME_SIZE: 16_384})
    client.output()
    client.send(client.headers(1, POST, end_stream=False))
    assert client.send(client.data(1, b"x" * 20_000))  # the peer has not seen it yet
    client.send(raw(T.SETTINGS, fr.FLAG_ACK, 0))
    client.send(client.data(1, b"x" * 20_000))
    client.expect_connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_we_split_data_to_the_peer_max_frame_size() -> None:
    client = RawClient().handshake([(SettingCode.INITIAL_WINDOW_SIZE, 100_000)])
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [])
    client.conn.send_data(1, b"y" * 40_000, end_stream=True)
    frames = [f for f in client.output() if f[0] == T.DATA]
    assert [len(f[3]) for f in frames] == [16_384, 16_384, 40_000 - 2 * 16_384]
    assert [f[1] for f in frames] == [0, 0, fr.FLAG_END_STREAM]


def test_we_split_a_large_head_into_continuation_frames() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1))
    client.conn.send_head(1, 200, [(b"x-big", b"z" * 40_000)], end_stream=True)
    frames = client.output()
    assert [f[0] for f in frames] == [T.HEADERS, T.CONTINUATION, T.CONTINUATION]
    assert frames[0][1] == fr.FLAG_END_STREAM and frames[-1][1] == fr.FLAG_END_HEADERS


# --- §4.3 field section compression -------------------------------------------------------------


def test_invalid_header_block_is_a_compression_error() -> None:
    client = RawClient().handshake()
    client.send(raw(T.HEADERS, fr.FLAG_END_STREAM | fr.FLAG_END_HEADERS, 1, b"\x40"))
    client.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


def test_priority_frame_inside_a_header_block() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False, end_headers=False))
    client.send(client.priority(1, 0, 255))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_headers_on_another_stream_inside_a_header_block() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_stream=False, end_headers=False))
    client.send(client.headers(3))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_any_other_frame_inside_a_header_block() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, end_headers=False))
    client.send(client.ping())
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_block_split_over_continuations_decodes_once() -> None:
    client = RawClient().handshake()
    block = client.encode([*REQUEST, (b"x-a", b"1"), (b"x-b", b"2")])
    parts = [block[:3], block[3:9], block[9:]]
    client.send(client.headers(1, block=parts[0], end_headers=False))
    client.send(client.continuation(1, parts[1], end_headers=False))
    events = client.send(client.continuation(1, parts[2]))
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers == [(b"x-a", b"1"), (b"x-b", b"2")]


def test_refused_stream_still_updates_hpack_state() -> None:
    client = RawClient(local_settings={SettingCode.MAX_CONCURRENT_STREAMS: 1}).handshake()
    client.send(client.headers(1, end_stream=False))
    # Stream 3 is refused, but its literal with indexing enters the dynamic table...
    client.send(client.headers(3, [*REQUEST, (b"x-indexed", b"yes")]))
    client.expect_stream_error(3, ErrorCode.REFUSED_STREAM)
    client.send(client.rst(1))
    # ...so that stream 5 can use the index.
    events = client.send(client.headers(5, [*REQUEST, (b"x-indexed", b"yes")]))
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers == [(b"x-indexed", b"yes")]


# --- RFC 7541 errors seen through the connection (h2spec hpack/) ---------------------------------


def _block_error(block: bytes) -> None:
    client = RawClient().handshake()
    client.send(raw(T.HEADERS, fr.FLAG_END_STREAM | fr.FLAG_END_HEADERS, 1, block))
    client.expect_connection_error(ErrorCode.COMPRESSION_ERROR)


@pytest.mark.parametrize(
    ("block", "case"),
    [
        (b"\x80", "indexed field with index 0 (RFC 7541 §6.1)"),
        (b"\xbe", "index beyond the empty dynamic table (§2.3.3)"),
        (b"\xff\x80\x01", "index far beyond both tables (§2.3.3)"),
        (b"\x82\x86\x84\x20", "size update after a field (§4.2)"),
        (b"\x3f\xe2\x1f\x82", "size update above SETTINGS_HEADER_TABLE_SIZE (§6.3)"),
        (b"\x00\x06x-test\x81\xff", "Huffman padding longer than 7 bits (§5.2)"),
        (b"\x00\x06x-test\x84\xff\xff\xff\xff", "Huffman string containing EOS (§5.2)"),
        (b"\x00\x06x-test\x81\x18", "Huffman padding not the EOS prefix (§5.2)"),
        (b"\x00\x06x-test\x7f", "string length beyond the block (§5.2)"),
        (b"\x82\x84\xff", "block ending inside an integer (§5.1)"),
    ],
)
def test_hpack_decoding_errors(block: bytes, case: str) -> None:
    _block_error(block)


def test_hpack_size_update_at_start_is_accepted() -> None:
    client = RawClient().handshake()
    block = b"\x20\x3f\xe1\x1f" + client.encode(REQUEST)  # sizes 0 then 4096
    events = client.send(client.headers(1, block=block))
    assert isinstance(events[0], RequestReceived)


def test_hpack_smaller_table_setting_requires_size_update() -> None:
    client = RawClient(local_settings={SettingCode.HEADER_TABLE_SIZE: 0}).handshake()
    events = client.send(client.headers(1, block=client.encode(REQUEST)))
    client.expect_connection_error(ErrorCode.COMPRESSION_ERROR)
    assert not [e for e in events if isinstance(e, RequestReceived)]
