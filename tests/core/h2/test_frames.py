"""Byte-level tests of the HTTP/2 frame codec (RFC 9113 §4, §6), hyperframe as an outside check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hyperframe.frame as hf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caboose.core.h2 import frames as fr
from caboose.core.h2.frames import (
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    PREFACE,
    Frame,
    FrameReader,
    FrameType,
    Priority,
)
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError


def header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    return length.to_bytes(3, "big") + bytes([ftype, flags]) + stream_id.to_bytes(4, "big")


def plain(frames: list[Frame]) -> list[tuple[int, int, int, bytes]]:
    return [(t, f, s, bytes(p)) for t, f, s, p in frames]


def read_all(data: bytes, **kwargs: Any) -> list[tuple[int, int, int, bytes]]:
    return plain(FrameReader(**kwargs).receive(data))


# --- FrameReader ------------------------------------------------------------------------------


def test_reader_returns_plain_tuples() -> None:
    data = header(3, 0, 1, 5) + b"abc"
    frames = FrameReader().receive(data)
    assert len(frames) == 1
    ftype, flags, stream_id, payload = frames[0]
    assert (ftype, flags, stream_id) == (0, 1, 5)
    assert isinstance(payload, memoryview)
    assert bytes(payload) == b"abc"


def test_reader_masks_reserved_stream_bit() -> None:
    assert read_all(header(0, 6, 0, 0x8000_0003)) == [(6, 0, 3, b"")]


def test_reader_several_frames_in_one_chunk() -> None:
    data = header(1, 0, 0, 1) + b"x" + header(0, 4, 1, 0) + header(2, 0, 1, 3) + b"yz"
    assert read_all(data) == [(0, 0, 1, b"x"), (4, 1, 0, b""), (0, 1, 3, b"yz")]


def test_reader_byte_at_a_time() -> None:
    data = header(5, 0, 0, 1) + b"hello" + header(0, 4, 0, 0)
    reader = FrameReader()
    got: list[Frame] = []
    for i in range(len(data)):
        got += reader.receive(data[i : i + 1])
    assert plain(got) == [(0, 0, 1, b"hello"), (4, 0, 0, b"")]
    assert reader.buffered == 0


def test_reader_views_stay_valid_after_more_input() -> None:
    # Views must not alias a buffer that later receives overwrite or resize (BufferError).
    reader = FrameReader()
    first = reader.receive(header(4, 0, 0, 1) + b"abcd" + header(4, 0, 0, 3) + b"ef")
    second = reader.receive(b"gh" + header(2, 0, 0, 5) + b"ij" + header(9, 0, 0, 7))
    third = reader.receive(b"x" * 9)
    assert plain(first) == [(0, 0, 1, b"abcd")]
    assert plain(second) == [(0, 0, 3, b"efgh"), (0, 0, 5, b"ij")]
    assert plain(third) == [(0, 0, 7, b"x" * 9)]
    assert bytes(first[0][3]) == b"abcd"


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_reader_accepts_other_buffers(kind: Callable[[bytearray], Any]) -> None:
    source = bytearray(header(2, 0, 0, 1) + b"ok")
    frames = FrameReader().receive(kind(source))
    source[-2:] = b"XX"  # the caller may reuse its buffer
    assert plain(frames) == [(0, 0, 1, b"ok")]


def test_reader_keeps_partial_frame_without_scanning() -> None:
    reader = FrameReader()
    assert reader.receive(header(100, 0, 0, 1) + b"a" * 10) == []
    for _ in range(8):
        assert reader.receive(b"b" * 10) == []
    assert reader.buffered == 99
    frames = reader.receive(b"c" * 10 + header(0, 6, 0, 0)[:4])
    assert plain(frames) == [(0, 0, 1, b"a" * 10 + b"b" * 80 + b"c" * 10)]
    assert reader.buffered == 4


def test_reader_returns_unknown_types() -> None:
    assert read_all(header(1, 0xFA, 0xFF, 9) + b"?") == [(0xFA, 0xFF, 9, b"?")]


def test_reader_refuses_oversized_frame_from_header_alone() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        FrameReader().receive(header(16_385, 0, 0, 1))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR
    assert info.value.stream_id == 0


def test_reader_max_frame_size_is_updatable() -> None:
    reader = FrameReader()
    reader.max_frame_size = 20_000
    frames = reader.receive(header(20_000, 0, 0, 1) + bytes(20_000))
    assert len(frames) == 1 and len(frames[0][3]) == 20_000
    assert read_all(header(16_384, 0, 0, 1) + bytes(16_384))[0][3] == bytes(16_384)


# --- connection preface (§3.4) ----------------------------------------------------------------


def test_preface_then_frames_in_one_chunk() -> None:
    reader = FrameReader(expect_preface=True)
    assert not reader.preface_received
    frames = reader.receive(PREFACE + header(0, 4, 0, 0))
    assert reader.preface_received
    assert plain(frames) == [(4, 0, 0, b"")]


def test_preface_split_across_receives() -> None:
    reader = FrameReader(expect_preface=True)
    assert reader.receive(PREFACE[:10]) == []
    assert not reader.preface_received
    assert reader.receive(PREFACE[10:] + header(0, 4, 0, 0)[:3]) == []
    assert reader.preface_received
    assert plain(reader.receive(header(0, 4, 0, 0)[3:])) == [(4, 0, 0, b"")]


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n\r\nXX", b"\x00"])
def test_invalid_preface_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        FrameReader(expect_preface=True).receive(data)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    assert info.value.stream_id == 0


def test_match_preface() -> None:
    assert fr.match_preface(PREFACE + b"extra") is True
    assert fr.match_preface(PREFACE[:5]) is None
    assert fr.match_preface(b"") is None
    assert fr.match_preface(b"GET / HTTP/1.1") is False


# --- payload decoders -------------------------------------------------------------------------


def mv(data: bytes) -> memoryview:
    return memoryview(data)


def test_strip_padding() -> None:
    assert bytes(fr.strip_padding(0, mv(b"\x02abc"))) == b"\x02abc"
    assert bytes(fr.strip_padding(FLAG_PADDED, mv(b"\x02abc"))) == b"a"
    assert bytes(fr.strip_padding(FLAG_PADDED, mv(b"\x03abc"))) == b""
    assert bytes(fr.strip_padding(FLAG_PADDED, mv(b"\x00"))) == b""


def test_parse_headers_payload() -> None:
    priority, fragment = fr.parse_headers_payload(1, 0, mv(b"block"))
    assert priority is None and bytes(fragment) == b"block"
    payload = b"\x03" + (0x8000_0005).to_bytes(4, "big") + b"\x0f" + b"block" + b"\x00" * 3
    priority, fragment = fr.parse_headers_payload(1, FLAG_PADDED | FLAG_PRIORITY, mv(payload))
    assert priority == Priority(depends_on=5, weight=16, exclusive=True)
    assert bytes(fragment) == b"block"


def test_headers_self_dependency_left_to_check_priority() -> None:
    # The block must still reach HPACK (§4.3), so the parser returns and check_priority raises.
    payload = (3).to_bytes(4, "big") + b"\x00" + b"block"
    priority, fragment = fr.parse_headers_payload(3, FLAG_PRIORITY, mv(payload))
    assert bytes(fragment) == b"block" and priority is not None
    with pytest.raises(RemoteProtocolError) as info:
        fr.check_priority(3, priority)
    assert (info.value.code, info.value.stream_id) == (ErrorCode.PROTOCOL_ERROR, 3)


def test_parse_simple_payloads() -> None:
    assert bytes(fr.parse_data(1, FLAG_PADDED, mv(b"\x01hi\x00"))) == b"hi"
    assert fr.parse_priority(5, mv((0x8000_0003).to_bytes(4, "big") + b"\xff")) == Priority(
        3, 256, True
    )
    assert fr.parse_rst_stream(1, mv((0xDEAD).to_bytes(4, "big"))) == 0xDEAD
    payload = b"\x00\x01\x00\x00\x10\x00\x00\x63\xff\xff\xff\xff"
    assert fr.parse_settings(0, 0, mv(payload)) == [(1, 4096), (0x63, 0xFFFF_FFFF)]
    assert fr.parse_settings(0, FLAG_ACK, mv(b"")) == []
    assert fr.parse_ping(0, mv(b"12345678")) == b"12345678"
    goaway = (0x8000_0007).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"why"
    assert fr.parse_goaway(0, mv(goaway)) == (7, 2, b"why")
    assert fr.parse_window_update(0, mv((0x8000_0001).to_bytes(4, "big"))) == 1
    promise = b"\x01" + (0x8000_0002).to_bytes(4, "big") + b"blk" + b"\x00"
    promised, fragment = fr.parse_push_promise(1, FLAG_PADDED, mv(promise))
    assert (promised, bytes(fragment)) == (2, b"blk")
    assert bytes(fr.parse_continuation(1, mv(b"more"))) == b"more"


STREAM_ERROR = True
CONN_ERROR = False
PE, FSE = ErrorCode.PROTOCOL_ERROR, ErrorCode.FRAME_SIZE_ERROR

ERROR_CASES: list[tuple[str, Callable[[], object], ErrorCode, bool]] = [
    ("DATA on stream 0", lambda: fr.parse_data(0, 0, mv(b"x")), PE, CONN_ERROR),
    ("HEADERS on stream 0", lambda: fr.parse_headers_payload(0, 0, mv(b"")), PE, CONN_ERROR),
    ("PRIORITY on stream 0", lambda: fr.parse_priority(0, mv(bytes(5))), PE, CONN_ERROR),
    ("RST_STREAM on stream 0", lambda: fr.parse_rst_stream(0, mv(bytes(4))), PE, CONN_ERROR),
    ("PUSH_PROMISE on 0", lambda: fr.parse_push_promise(0, 0, mv(bytes(4))), PE, CONN_ERROR),
    ("CONTINUATION on 0", lambda: fr.parse_continuation(0, mv(b"")), PE, CONN_ERROR),
    ("SETTINGS on a stream", lambda: fr.parse_settings(1, 0, mv(b"")), PE, CONN_ERROR),
    ("PING on a stream", lambda: fr.parse_ping(1, mv(bytes(8))), PE, CONN_ERROR),
    ("GOAWAY on a stream", lambda: fr.parse_goaway(1, mv(bytes(8))), PE, CONN_ERROR),
    ("RST_STREAM length 3", lambda: fr.parse_rst_stream(1, mv(bytes(3))), FSE, CONN_ERROR),
    ("RST_STREAM length 5", lambda: fr.parse_rst_stream(1, mv(bytes(5))), FSE, CONN_ERROR),
    ("PRIORITY length 4", lambda: fr.parse_priority(1, mv(bytes(4))), FSE, STREAM_ERROR),
    ("PRIORITY length 6", lambda: fr.parse_priority(1, mv(bytes(6))), FSE, STREAM_ERROR),
    ("PRIORITY on itself", lambda: fr.parse_priority(1, mv(b"\0\0\0\1\0")), PE, STREAM_ERROR),
    ("WINDOW_UPDATE len 3", lambda: fr.parse_window_update(1, mv(bytes(3))), FSE, CONN_ERROR),
    ("WINDOW_UPDATE len 5", lambda: fr.parse_window_update(0, mv(bytes(5))), FSE, CONN_ERROR),
    ("WINDOW_UPDATE 0 stream", lambda: fr.parse_window_update(1, mv(bytes(4))), PE, STREAM_ERROR),
    ("WINDOW_UPDATE 0 conn", lambda: fr.parse_window_update(0, mv(bytes(4))), PE, CONN_ERROR),
    ("SETTINGS length 5", lambda: fr.parse_settings(0, 0, mv(bytes(5))), FSE, CONN_ERROR),
    ("SETTINGS ACK payload", lambda: fr.parse_settings(0, FLAG_ACK, mv(bytes(6))), FSE, CONN_ERROR),
    ("PING length 7", lambda: fr.parse_ping(0, mv(bytes(7))), FSE, CONN_ERROR),
    ("PING length 9", lambda: fr.parse_ping(0, mv(bytes(9))), FSE, CONN_ERROR),
    ("GOAWAY length 7", lambda: fr.parse_goaway(0, mv(bytes(7))), FSE, CONN_ERROR),
    ("pad == length", lambda: fr.parse_data(1, FLAG_PADDED, mv(b"\x03ab")), PE, CONN_ERROR),
    ("pad > length", lambda: fr.parse_data(1, FLAG_PADDED, mv(b"\x09")), PE, CONN_ERROR),
    ("no pad length", lambda: fr.parse_data(1, FLAG_PADDED, mv(b"")), FSE, CONN_ERROR),
    (
        "HEADERS pad too long",
        lambda: fr.parse_headers_payload(1, FLAG_PADDED, mv(b"\x05abcd")),
        PE,
        CONN_ERROR,
    ),
    (
        "HEADERS short priority",
        lambda: fr.parse_headers_payload(1, FLAG_PRIORITY, mv(bytes(4))),
        FSE,
        CONN_ERROR,
    ),
    (
        "PUSH_PROMISE short",
        lambda: fr.parse_push_promise(1, FLAG_PADDED, mv(b"\x01abcd")),
        FSE,
        CONN_ERROR,
    ),
]


@pytest.mark.parametrize(
    ("call", "code", "stream_error"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_decoder_errors(call: Callable[[], object], code: ErrorCode, stream_error: bool) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        call()
    assert info.value.code == code
    assert info.value.is_stream_error is stream_error
    if stream_error:
        assert info.value.stream_id == 1


# --- serialisers ------------------------------------------------------------------------------


def written(write: Callable[..., None], *args: Any, **kwargs: Any) -> bytes:
    out = bytearray()
    write(out, *args, **kwargs)
    return bytes(out)


def test_serialisers_match_hyperframe() -> None:
    data = hf.DataFrame(1, b"body", flags=["END_STREAM"])
    assert written(fr.write_data, 1, b"body", end_stream=True) == data.serialize()
    rst = hf.RstStreamFrame(3, error_code=8)
    assert written(fr.write_rst_stream, 3, 8) == rst.serialize()
    settings_frame = hf.SettingsFrame(0, settings={1: 0, 4: 1 << 20})
    assert written(fr.write_settings, [(1, 0), (4, 1 << 20)]) == settings_frame.serialize()
    assert written(fr.write_settings_ack) == hf.SettingsFrame(0, flags=["ACK"]).serialize()
    ping = hf.PingFrame(0, opaque_data=b"abcdefgh", flags=["ACK"])
    assert written(fr.write_ping, b"abcdefgh", ack=True) == ping.serialize()
    goaway = hf.GoAwayFrame(0, last_stream_id=9, error_code=1, additional_data=b"bye")
    assert written(fr.write_goaway, 9, 1, b"bye") == goaway.serialize()
    update = hf.WindowUpdateFrame(5, window_increment=1000)
    assert written(fr.write_window_update, 5, 1000) == update.serialize()
    prio = hf.PriorityFrame(5, depends_on=3, stream_weight=255, exclusive=True)
    assert written(fr.write_priority, 5, Priority(3, 256, True)) == prio.serialize()


def test_write_data_padded_parses_back() -> None:
    raw = written(fr.write_data, 1, b"abc", pad_length=4)
    ((ftype, flags, stream_id, payload),) = FrameReader().receive(raw)
    assert (ftype, flags & FLAG_PADDED, len(payload)) == (0, FLAG_PADDED, 8)
    assert bytes(fr.parse_data(stream_id, flags, payload)) == b"abc"


def test_write_headers_single_frame() -> None:
    raw = written(fr.write_headers, 1, b"\x82\x84", end_stream=True)
    assert raw == header(2, 1, FLAG_END_STREAM | FLAG_END_HEADERS, 1) + b"\x82\x84"


def test_write_headers_splits_into_continuations() -> None:
    block = bytes(range(256)) * 160  # 40960 bytes
    raw = written(fr.write_headers, 7, block, end_stream=True, max_frame_size=16_384)
    frames = plain(FrameReader().receive(raw))
    assert [(t, f, s, len(p)) for t, f, s, p in frames] == [
        (FrameType.HEADERS, FLAG_END_STREAM, 7, 16_384),
        (FrameType.CONTINUATION, 0, 7, 16_384),
        (FrameType.CONTINUATION, FLAG_END_HEADERS, 7, 40_960 - 2 * 16_384),
    ]
    assert b"".join(p for *_, p in frames) == block


def test_write_headers_exact_fit_needs_no_continuation() -> None:
    raw = written(fr.write_headers, 1, bytes(100), max_frame_size=100)
    assert plain(FrameReader().receive(raw)) == [(1, FLAG_END_HEADERS, 1, bytes(100))]


def test_write_headers_with_priority_and_padding_splits_by_room() -> None:
    priority = Priority(3, 10, False)
    raw = written(
        fr.write_headers, 5, bytes(30), max_frame_size=16, priority=priority, pad_length=2
    )
    frames = FrameReader(max_frame_size=16).receive(raw)
    first = frames[0]
    assert first[1] == FLAG_PADDED | FLAG_PRIORITY and len(first[3]) == 16
    got_priority, fragment = fr.parse_headers_payload(5, first[1], first[3])
    assert got_priority == priority and len(fragment) == 16 - 1 - 5 - 2
    rest = b"".join(bytes(p) for *_, p in frames[1:])
    assert bytes(fragment) + rest == bytes(30)
    assert [f[1] for f in frames[1:]] == [0, FLAG_END_HEADERS]


def test_write_push_promise_splits() -> None:
    raw = written(fr.write_push_promise, 1, 2, bytes(20), max_frame_size=16)
    frames = FrameReader(max_frame_size=16).receive(raw)
    assert [(t, f) for t, f, _, _ in frames] == [(5, 0), (9, FLAG_END_HEADERS)]
    promised, fragment = fr.parse_push_promise(1, frames[0][1], frames[0][3])
    assert promised == 2 and bytes(fragment) + bytes(frames[1][3]) == bytes(20)


def test_hyperframe_parses_our_headers_split() -> None:
    raw = written(fr.write_headers, 3, b"x" * 50, max_frame_size=20)
    frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
    frame.parse_body(memoryview(raw[9 : 9 + length]))
    assert isinstance(frame, hf.HeadersFrame)
    assert frame.data == b"x" * 20 and "END_HEADERS" not in frame.flags


@pytest.mark.parametrize(
    "call",
    [
        lambda out: fr.write_ping(out, b"short"),
        lambda out: fr.write_window_update(out, 1, 0),
        lambda out: fr.write_window_update(out, 1, 2**31),
        lambda out: fr.write_priority(out, 1, Priority(0, 0, False)),
        lambda out: fr.write_data(out, 1, b"", pad_length=256),
    ],
)
def test_serialiser_misuse_is_local_error(call: Callable[[bytearray], None]) -> None:
    with pytest.raises(LocalProtocolError):
        call(bytearray())


# --- hypothesis -------------------------------------------------------------------------------

stream_ids = st.integers(1, 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
pads = st.none() | st.integers(0, 255)
priorities = st.builds(Priority, st.integers(0, 2**31 - 1), st.integers(1, 256), st.booleans())


def one_frame(raw: bytes, max_frame_size: int = fr.MAX_FRAME_SIZE_LIMIT) -> Frame:
    frames = FrameReader(max_frame_size=max_frame_size).receive(raw)
    assert len(frames) == 1
    return frames[0]


@given(stream_ids, st.binary(max_size=300), st.booleans(), pads)
def test_roundtrip_data(stream_id: int, data: bytes, end_stream: bool, pad: int | None) -> None:
    t, flags, sid, payload = one_frame(
        written(fr.write_data, stream_id, data, end_stream=end_stream, pad_length=pad)
    )
    assert (t, sid, bool(flags & FLAG_END_STREAM)) == (0, stream_id, end_stream)
    assert bytes(fr.parse_data(sid, flags, payload)) == data


@given(
    stream_ids,
    st.binary(max_size=200),
    st.booleans(),
    st.none() | priorities,
    pads,
    st.integers(300, 400),
)
def test_roundtrip_headers(
    stream_id: int, block: bytes, end: bool, prio: Priority | None, pad: int | None, size: int
) -> None:
    raw = written(
        fr.write_headers,
        stream_id,
        block,
        end_stream=end,
        priority=prio,
        pad_length=pad,
        max_frame_size=size,
    )
    frames = FrameReader(max_frame_size=size).receive(raw)
    t, flags, sid, payload = frames[0]
    got_prio, fragment = fr.parse_headers_payload(sid, flags, payload)
    fragments = [bytes(fragment)] + [
        bytes(fr.parse_continuation(s, p)) for _, _, s, p in frames[1:]
    ]
    assert (t, sid, got_prio, bool(flags & FLAG_END_STREAM)) == (1, stream_id, prio, end)
    assert b"".join(fragments) == block
    assert [bool(f & FLAG_END_HEADERS) for _, f, _, _ in frames] == [False] * (len(frames) - 1) + [
        True
    ]


@given(stream_ids, priorities)
def test_roundtrip_priority(stream_id: int, priority: Priority) -> None:
    _, _, sid, payload = one_frame(written(fr.write_priority, stream_id, priority))
    if priority.depends_on == stream_id:
        with pytest.raises(RemoteProtocolError):
            fr.parse_priority(sid, payload)
    else:
        assert fr.parse_priority(sid, payload) == priority


@given(stream_ids, u32)
def test_roundtrip_rst_stream(stream_id: int, code: int) -> None:
    _, _, sid, payload = one_frame(written(fr.write_rst_stream, stream_id, code))
    assert (sid, fr.parse_rst_stream(sid, payload)) == (stream_id, code)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), u32), max_size=20))
def test_roundtrip_settings(pairs: list[tuple[int, int]]) -> None:
    _, flags, sid, payload = one_frame(written(fr.write_settings, pairs))
    assert fr.parse_settings(sid, flags, payload) == pairs


@given(stream_ids, st.integers(1, 2**31 - 1), st.binary(max_size=100), pads)
def test_roundtrip_push_promise(sid: int, promised: int, block: bytes, pad: int | None) -> None:
    _, flags, got_sid, payload = one_frame(
        written(fr.write_push_promise, sid, promised, block, pad_length=pad)
    )
    assert flags & FLAG_END_HEADERS
    got_promised, fragment = fr.parse_push_promise(got_sid, flags, payload)
    assert (got_promised, bytes(fragment)) == (promised, block)


@given(st.binary(min_size=8, max_size=8), st.booleans())
def test_roundtrip_ping(data: bytes, ack: bool) -> None:
    _, flags, sid, payload = one_frame(written(fr.write_ping, data, ack=ack))
    assert (fr.parse_ping(sid, payload), bool(flags & FLAG_ACK)) == (data, ack)


@given(st.integers(0, 2**31 - 1), u32, st.binary(max_size=100))
def test_roundtrip_goaway(last: int, code: int, debug: bytes) -> None:
    _, _, sid, payload = one_frame(written(fr.write_goaway, last, code, debug))
    assert fr.parse_goaway(sid, payload) == (last, code, debug)


@given(st.integers(0, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_roundtrip_window_update(stream_id: int, increment: int) -> None:
    _, _, sid, payload = one_frame(written(fr.write_window_update, stream_id, increment))
    assert (sid, fr.parse_window_update(sid, payload)) == (stream_id, increment)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**31 - 1), st.binary(max_size=50))
def test_roundtrip_any_frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
    raw = written(fr.write_frame, ftype, flags, stream_id, payload)
    assert plain(FrameReader().receive(raw)) == [(ftype, flags, stream_id, payload)]


@given(st.lists(st.binary(max_size=40), max_size=8), st.data())
def test_chunking_does_not_change_frames(payloads: list[bytes], data: st.DataObject) -> None:
    out = bytearray()
    for i, payload in enumerate(payloads):
        fr.write_data(out, 2 * i + 1, payload, end_stream=bool(i % 2))
    raw = bytes(out)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    reader = FrameReader()
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        got += reader.receive(raw[start:end])
    assert plain(got) == read_all(raw)
    assert len(got) == len(payloads)


DECODERS: dict[int, Callable[[int, int, memoryview], object]] = {
    FrameType.DATA: fr.parse_data,
    FrameType.HEADERS: fr.parse_headers_payload,
    FrameType.PRIORITY: lambda s, f, p: fr.parse_priority(s, p),
    FrameType.RST_STREAM: lambda s, f, p: fr.parse_rst_stream(s, p),
    FrameType.SETTINGS: fr.parse_settings,
    FrameType.PUSH_PROMISE: fr.parse_push_promise,
    FrameType.PING: lambda s, f, p: fr.parse_ping(s, p),
    FrameType.GOAWAY: lambda s, f, p: fr.parse_goaway(s, p),
    FrameType.WINDOW_UPDATE: lambda s, f, p: fr.parse_window_update(s, p),
    FrameType.CONTINUATION: lambda s, f, p: fr.parse_continuation(s, p),
}


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans(), st.integers(0, 64))
def test_random_bytes_raise_only_protocol_errors(data: bytes, preface: bool, max_size: int) -> None:
    reader = FrameReader(max_frame_size=max_size, expect_preface=preface)
    try:
        frames = reader.receive(data)
    except RemoteProtocolError:
        return
    for ftype, flags, stream_id, payload in frames:
        decode = DECODERS.get(ftype)
        if decode is None:
            continue  # unknown types are ignored (§5.5)
        try:
            decode(stream_id, flags, payload)
        except RemoteProtocolError as exc:
            assert isinstance(exc.code, ErrorCode)


@given(st.integers(0, 9), st.integers(0, 255), st.integers(0, 4), st.binary(max_size=20))
def test_random_frames_decode_or_raise_protocol_errors(
    ftype: int, flags: int, stream_id: int, payload: bytes
) -> None:
    # Structured fuzzing: valid headers, hostile payloads, for every known frame type.
    ((_, got_flags, sid, view),) = FrameReader().receive(
        written(fr.write_frame, ftype, flags, stream_id, payload)
    )
    try:
        DECODERS[ftype](sid, got_flags, view)
    except RemoteProtocolError as exc:
        assert exc.stream_id in (0, stream_id)


def test_refused_serialisation_leaves_output_untouched() -> None:
    out = bytearray(b"kept")
    with pytest.raises(LocalProtocolError):
        fr.write_headers(out, 1, b"block", pad_length=300)
    with pytest.raises(LocalProtocolError):
        fr.write_data(out, 1, b"data", pad_length=-1)
    with pytest.raises(LocalProtocolError):
        fr.write_headers(out, 1, b"block", max_frame_size=5, priority=Priority(0, 16, False))
    assert out == b"kept"


def test_write_headers_empty_block() -> None:
    raw = written(fr.write_headers, 1, b"", end_stream=True)
    assert raw == header(0, 1, FLAG_END_STREAM | FLAG_END_HEADERS, 1)
