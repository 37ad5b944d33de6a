"""Hypothesis: any frame sequence yields events (and maybe one GOAWAY), never an exception."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    ResponseReceived,
)
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import ConnectionState, H2Connection
from caboose.core.h2.stream import StreamState

from .rawpeer import raw, read_frames

STREAM_IDS = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 2**31 - 1])
# Blocks that decode (static-table fields, one literal that enters the dynamic table)
# mixed with arbitrary bytes, which mostly do not.
GOOD_BLOCKS = [
    b"\x82\x86\x84\x41\x0bexample.com",  # GET http / :authority (indexed)
    b"\x83\x86\x84\x41\x0bexample.com\x5c\x0210",  # POST with content-length: 10
    b"\x88",  # :status 200
    b"\x40\x06x-testr\x02ok",  # a trailer field
    b"\xbe",  # the dynamic entry, if there is one
    b"\x00\x0aconnection\x05close",  # connection-specific: malformed
]
BLOCK = st.one_of(st.sampled_from(GOOD_BLOCKS), st.binary(max_size=24))
SETTING = st.tuples(st.integers(0, 10), st.sampled_from([0, 1, 2, 100, 16_384, 65_535, 2**31]))


@st.composite
def payloads(draw: st.DrawFn, frame_type: int) -> bytes:
    if frame_type in (fr.FrameType.HEADERS, fr.FrameType.CONTINUATION):
        return draw(BLOCK)
    if frame_type == fr.FrameType.SETTINGS:
        pairs = draw(st.lists(SETTING, max_size=3))
        return fr.settings_payload([(c, min(v, 2**32 - 1)) for c, v in pairs])
    if frame_type in (fr.FrameType.WINDOW_UPDATE, fr.FrameType.RST_STREAM):
        value = draw(st.sampled_from([0, 1, 1000, 2**31 - 1, 2**32 - 1]))
        return value.to_bytes(4, "big")
    if frame_type == fr.FrameType.PING:
        return draw(st.binary(min_size=8, max_size=8))
    return draw(st.binary(max_size=40))


@st.composite
def frame_bytes(draw: st.DrawFn) -> bytes:
    frame_type = draw(st.integers(0, 11))
    flags = draw(st.sampled_from([0, 1, 4, 5, 8, 0x20, 0x25, 0xFF]))
    stream_id = draw(STREAM_IDS)
    return raw(frame_type, flags, stream_id, draw(payloads(frame_type)))


@st.composite
def conversations(draw: st.DrawFn) -> list[bytes]:
    start = fr.PREFACE + raw(fr.FrameType.SETTINGS, 0, 0) if draw(st.booleans()) else b""
    data = start + b"".join(draw(st.lists(frame_bytes(), max_size=25)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if a < b]


def _play(conn: H2Connection, chunks: list[bytes]) -> None:
    conn.initiate()
    for chunk in chunks:
        events = conn.receive_data(chunk)
        assert all(isinstance(e, Event) for e in events)
        ended = [i for i, e in enumerate(events) if isinstance(e, ConnectionTerminated)]
        assert ended in ([], [len(events) - 1])
        if ended:
            assert conn.state is ConnectionState.CLOSED
            assert any(f[0] == fr.FrameType.GOAWAY for f in read_frames(conn.data_to_send()))
            assert conn.receive_data(chunk) == []
            return
        _behave_like_an_app(conn, events)
        read_frames(conn.data_to_send())  # what we send always parses as frames


def _behave_like_an_app(conn: H2Connection, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, DataReceived):
            conn.acknowledge(event.stream_id, event.flow_controlled_length)
        if isinstance(event, RequestReceived | ResponseReceived):
            stream_id = event.stream_id
            if conn.client_side or conn.stream_state(stream_id) not in (
                StreamState.OPEN,
                StreamState.HALF_CLOSED_REMOTE,
            ):
                continue
            conn.send_head(stream_id, 200, [(b"content-type", b"text/plain")])
            room = min(conn.sendable(stream_id), 5)
            conn.send_data(stream_id, b"hello"[:room], end_stream=room == 5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations())
def test_server_role_survives_any_frames(chunks: list[bytes]) -> None:
    _play(H2Connection(client_side=False), chunks)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_bytes(), max_size=25))
def test_client_role_survives_any_frames(frames: list[bytes]) -> None:
    conn = H2Connection(client_side=True)
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")])
    conn.send_headers(3, [(b":method", b"HEAD"), (b":scheme", b"http"), (b":path", b"/")])
    conn.data_to_send()
    _play(conn, [raw(fr.FrameType.SETTINGS, 0, 0) + b"".join(frames)])
