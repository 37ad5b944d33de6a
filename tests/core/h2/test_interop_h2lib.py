"""Interop without sockets: the python-hyper ``h2`` library against our core, both directions.

``h2`` is an independent implementation, so agreement with it checks our reading of RFC 9113
rather than our tests' reading. Each test pumps bytes both ways until both sides are quiet,
crediting flow control as the application would, with bodies larger than the windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

from caboose.core import events as ev
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode

Fields = list[tuple[bytes, bytes]]
SMALL: dict[str, Any] = {
    "local_settings": {SettingCode.INITIAL_WINDOW_SIZE: 65_535},
    "connection_window": 65_535,
}


def h2lib(client_side: bool, **settings: int) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    if settings:
        values = {getattr(h2.settings.SettingCodes, k.upper()): v for k, v in settings.items()}
        conn.local_settings = h2.settings.Settings(client=client_side, initial_values=values)
    conn.initiate_connection()
    return conn


@dataclass
class Outbox:
    """Bodies waiting for flow-control credit, then optional trailers, per stream."""

    pending: dict[int, bytearray] = field(default_factory=dict)
    trailers: dict[int, Fields | None] = field(default_factory=dict)

    def add(self, stream_id: int, body: bytes, trailers: Fields | None = None) -> None:
        self.pending[stream_id] = bytearray(body)
        self.trailers[stream_id] = trailers

    def flush_ours(self, conn: H2Connection) -> None:
        for stream_id, body in list(self.pending.items()):
            room = conn.sendable(stream_id)
            chunk, rest = bytes(body[:room]), body[room:]
            self.pending[stream_id] = rest
            last = not rest
            trailers = self.trailers[stream_id]
            if chunk or last:
                conn.send_data(stream_id, chunk, end_stream=last and trailers is None)
            if last:
                if trailers is not None:
                    conn.send_trailers(stream_id, trailers)
                del self.pending[stream_id]

    def flush_theirs(self, conn: h2.connection.H2Connection) -> None:
        for stream_id, body in list(self.pending.items()):
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            chunk, rest = bytes(body[:room]), body[room:]
            self.pending[stream_id] = rest
            last = not rest
            trailers = self.trailers[stream_id]
            if chunk or last:
                conn.send_data(stream_id, chunk, end_stream=last and trailers is None)
            if last:
                if trailers is not None:
                    conn.send_headers(stream_id, trailers, end_stream=True)
                del self.pending[stream_id]


class Wire:
    """Our connection and an ``h2`` one, with outboxes and every event seen so far."""

    def __init__(self, ours: H2Connection, theirs: h2.connection.H2Connection) -> None:
        self.ours = ours
        self.theirs = theirs
        self.ours.initiate()
        self.our_out = Outbox()
        self.their_out = Outbox()
        self.our_events: list[ev.Event] = []
        self.their_events: list[Any] = []

    def pump(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            self.our_out.flush_ours(self.ours)
            self.their_out.flush_theirs(self.theirs)
            to_theirs = self.ours.data_to_send()
            to_ours = self.theirs.data_to_send()
            if not to_theirs and not to_ours:
                return
            if to_theirs:
                for their_event in self.theirs.receive_data(to_theirs):
                    self.their_events.append(their_event)
                    if isinstance(their_event, h2.events.DataReceived):
                        size = their_event.flow_controlled_length
                        self.theirs.acknowledge_received_data(size, their_event.stream_id)
            if to_ours:
                for event in self.ours.receive_data(to_ours):
                    self.our_events.append(event)
                    if isinstance(event, ev.DataReceived):
                        self.ours.acknowledge(event.stream_id, event.flow_controlled_length)
        raise AssertionError("the peers never went quiet")

    def our_bodies(self) -> dict[int, bytes]:
        bodies: dict[int, bytearray] = {}
        for event in self.our_events:
            if isinstance(event, ev.DataReceived):
                bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
        return {k: bytes(v) for k, v in bodies.items()}

    def their_bodies(self) -> dict[int, bytes]:
        bodies: dict[int, bytearray] = {}
        for event in self.their_events:
            if isinstance(event, h2.events.DataReceived):
                bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
        return {k: bytes(v) for k, v in bodies.items()}

    def of_ours(self, kind: type) -> list[Any]:
        return [e for e in self.our_events if isinstance(e, kind)]

    def of_theirs(self, kind: type) -> list[Any]:
        return [e for e in self.their_events if isinstance(e, kind)]


def body_for(stream_id: int, size: int) -> bytes:
    return (b"%d:" % stream_id + bytes(range(256)) * (size // 256 + 1))[:size]


def request(method: bytes, path: bytes, extra: Fields = ()) -> Fields:  # type: ignore[assignment]
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":path", path),
        (b":authority", b"example.com"),
        *extra,
    ]


# --- the h2 library as client, our server role -------------------------------------------------


def test_h2lib_client_many_streams_big_bodies_trailers() -> None:
    wire = Wire(H2Connection(client_side=False, **SMALL), h2lib(True))
    wire.pump()
    sizes = {}
    for index in range(12):
        stream_id = wire.theirs.get_next_available_stream_id()
        wire.theirs.send_headers(stream_id, request(b"POST", b"/echo", [(b"te", b"trailers")]))
        sizes[stream_id] = 1000 + 40_000 * index  # up to ~440 KB, far beyond the windows
        wire.their_out.add(stream_id, body_for(stream_id, sizes[stream_id]), [(b"x-req", b"t")])
    wire.pump()
    requests = {e.stream_id: e for e in wire.of_ours(ev.RequestReceived)}
    assert sorted(requests) == sorted(sizes)
    assert all(r.method == b"POST" and r.target == b"/echo" for r in requests.values())
    assert wire.our_bodies() == {s: body_for(s, n) for s, n in sizes.items()}
    trailers = {e.stream_id: e.headers for e in wire.of_ours(ev.TrailersReceived)}
    assert trailers == {s: [(b"x-req", b"t")] for s in sizes}
    # Echo every body back with trailers, larger than the client's windows too.
    for stream_id in sizes:
        wire.ours.send_head(stream_id, 200, [(b"content-type", b"application/octet-stream")])
        wire.our_out.add(stream_id, body_for(stream_id, sizes[stream_id]), [(b"grpc-status", b"0")])
    wire.pump()
    assert wire.their_bodies() == {s: body_for(s, n) for s, n in sizes.items()}
    responses = wire.of_theirs(h2.events.ResponseReceived)
    assert {r.stream_id for r in responses} == set(sizes)
    assert all((b":status", b"200") in r.headers for r in responses)
    their_trailers = {e.stream_id: e.headers for e in wire.of_theirs(h2.events.TrailersReceived)}
    assert their_trailers == {s: [(b"grpc-status", b"0")] for s in sizes}
    assert len(wire.of_theirs(h2.events.StreamEnded)) == len(sizes)
    assert wire.ours.open_streams == 0


def test_h2lib_client_get_with_informational() -> None:
    wire = Wire(H2Connection(client_side=False), h2lib(True))
    wire.theirs.send_headers(1, request(b"GET", b"/"), end_stream=True)
    wire.pump()
    wire.ours.send_informational(1, 103, [(b"link", b"</style.css>; rel=preload")])
    wire.ours.send_head(1, 200, [(b"content-length", b"13")])
    wire.ours.send_data(1, b"Hello, world!", end_stream=True)
    wire.pump()
    assert [type(e) for e in wire.their_events if not isinstance(e, _HOUSEKEEPING)] == [
        h2.events.InformationalResponseReceived,
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]


_HOUSEKEEPING = (
    h2.events.RemoteSettingsChanged,
    h2.events.SettingsAcknowledged,
    h2.events.WindowUpdated,
)


def test_h2lib_client_reset_and_our_reset() -> None:
    wire = Wire(H2Connection(client_side=False), h2lib(True))
    for stream_id in (1, 3):
        wire.theirs.send_headers(stream_id, request(b"POST", b"/upload"))
        wire.theirs.send_data(stream_id, b"partial")
    wire.pump()
    wire.theirs.reset_stream(1, ErrorCode.CANCEL)
    wire.ours.reset_stream(3, ErrorCode.REFUSED_STREAM)
    wire.pump()
    assert ev.StreamReset(1, ErrorCode.CANCEL, remote=True) in wire.our_events
    resets = wire.of_theirs(h2.events.StreamReset)
    assert [(r.stream_id, r.error_code, r.remote_reset) for r in resets] == [
        (3, ErrorCode.REFUSED_STREAM, True)
    ]
    assert wire.ours.open_streams == 0


def test_h2lib_client_sees_our_goaway() -> None:
    wire = Wire(H2Connection(client_side=False), h2lib(True))
    wire.theirs.send_headers(1, request(b"GET", b"/"), end_stream=True)
    wire.pump()
    # h2 treats any GOAWAY as the end of the connection, so the response goes first.
    wire.ours.send_head(1, 200, [], end_stream=True)
    wire.ours.goaway()
    wire.pump()
    terminated = wire.of_theirs(h2.events.ConnectionTerminated)
    assert [(t.error_code, t.last_stream_id) for t in terminated] == [(0, 1)]
    assert wire.of_theirs(h2.events.StreamEnded)[0].stream_id == 1


def test_h2lib_client_goaway_and_ping_and_settings() -> None:
    wire = Wire(H2Connection(client_side=False), h2lib(True))
    wire.pump()
    wire.theirs.ping(b"12345678")
    wire.theirs.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    wire.pump()
    assert ev.PingReceived(b"12345678") in wire.our_events
    assert wire.of_theirs(h2.events.PingAckReceived)[0].ping_data == b"12345678"
    changed = wire.of_ours(ev.SettingsChanged)[-1].changed
    assert changed[SettingCode.INITIAL_WINDOW_SIZE] == (65_535, 100)
    wire.ours.ping(b"87654321")
    wire.pump()
    assert ev.PingAcknowledged(b"87654321") in wire.our_events
    wire.theirs.close_connection(ErrorCode.NO_ERROR, additional_data=b"done")
    wire.pump()
    assert ev.GoAwayReceived(0, 0, b"done") in wire.our_events


# --- our client role, the h2 library as server ----------------------------------------------------


def test_our_client_against_h2lib_server_big_bodies_trailers() -> None:
    wire = Wire(H2Connection(client_side=True, **SMALL), h2lib(False))
    sizes = {}
    for index in range(10):
        stream_id = wire.ours.get_next_available_stream_id()
        wire.ours.send_headers(stream_id, request(b"PUT", b"/data", [(b"te", b"trailers")]))
        sizes[stream_id] = 500 + 50_000 * index
        wire.our_out.add(stream_id, body_for(stream_id, sizes[stream_id]), [(b"x-sum", b"ok")])
    wire.pump()
    received = {e.stream_id: e for e in wire.of_theirs(h2.events.RequestReceived)}
    assert sorted(received) == sorted(sizes)
    assert wire.their_bodies() == {s: body_for(s, n) for s, n in sizes.items()}
    their_trailers = {e.stream_id: e.headers for e in wire.of_theirs(h2.events.TrailersReceived)}
    assert their_trailers == {s: [(b"x-sum", b"ok")] for s in sizes}
    for stream_id in sizes:
        wire.theirs.send_headers(stream_id, [(b":status", b"201"), (b"server", b"h2")])
        wire.their_out.add(stream_id, body_for(stream_id, sizes[stream_id]), [(b"x-t", b"1")])
    wire.pump()
    responses = {e.stream_id: e for e in wire.of_ours(ev.ResponseReceived)}
    assert {s: (r.status, r.headers) for s, r in responses.items()} == {
        s: (201, [(b"server", b"h2")]) for s in sizes
    }
    assert wire.our_bodies() == {s: body_for(s, n) for s, n in sizes.items()}
    assert {e.stream_id for e in wire.of_ours(ev.TrailersReceived)} == set(sizes)
    assert len(wire.of_ours(ev.StreamEnded)) == len(sizes)
    assert wire.ours.open_streams == 0


def test_our_client_resets_and_is_reset() -> None:
    wire = Wire(H2Connection(client_side=True), h2lib(False))
    for _ in range(2):
        stream_id = wire.ours.get_next_available_stream_id()
        wire.ours.send_headers(stream_id, request(b"GET", b"/slow"), end_stream=True)
    wire.pump()
    wire.ours.reset_stream(1, ErrorCode.CANCEL)
    wire.theirs.reset_stream(3, ErrorCode.ENHANCE_YOUR_CALM)
    wire.pump()
    theirs = wire.of_theirs(h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in theirs] == [(1, ErrorCode.CANCEL)]
    assert wire.of_ours(ev.StreamReset) == [ev.StreamReset(3, ErrorCode.ENHANCE_YOUR_CALM)]


def test_our_client_sees_h2lib_goaway() -> None:
    wire = Wire(H2Connection(client_side=True), h2lib(False))
    wire.ours.send_headers(1, request(b"GET", b"/"), end_stream=True)
    wire.pump()
    wire.ours.send_headers(3, request(b"GET", b"/late"), end_stream=True)
    wire.theirs.close_connection(ErrorCode.NO_ERROR, last_stream_id=1)
    to_ours = wire.theirs.data_to_send()
    events = wire.ours.receive_data(to_ours)
    assert events[0] == ev.GoAwayReceived(1, 0, b"")
    assert events[1] == ev.StreamReset(3, ErrorCode.REFUSED_STREAM, remote=True)


def test_our_client_informational_and_head() -> None:
    wire = Wire(H2Connection(client_side=True), h2lib(False))
    wire.ours.send_headers(1, request(b"HEAD", b"/"), end_stream=True)
    wire.pump()
    wire.theirs.send_headers(1, [(b":status", b"100")])
    wire.theirs.send_headers(1, [(b":status", b"200"), (b"content-length", b"42")], True)
    wire.pump()
    kinds = [type(e) for e in wire.our_events if not isinstance(e, _OUR_HOUSEKEEPING)]
    assert kinds == [ev.InformationalResponseReceived, ev.ResponseReceived, ev.StreamEnded]


_OUR_HOUSEKEEPING = (ev.SettingsChanged, ev.SettingsAcknowledged, ev.WindowOpened)


def test_header_table_changes_interoperate() -> None:
    wire = Wire(
        H2Connection(client_side=True, local_settings={SettingCode.HEADER_TABLE_SIZE: 256}),
        h2lib(False, header_table_size=0),
    )
    wire.pump()
    for index in range(20):
        stream_id = wire.ours.get_next_available_stream_id()
        fields = request(b"GET", b"/%d" % index, [(b"x-long-header-%d" % (index % 3), b"v" * 40)])
        wire.ours.send_headers(stream_id, fields, end_stream=True)
        wire.pump()
        wire.theirs.send_headers(
            stream_id, [(b":status", b"200"), (b"x-echo", b"%d" % index)], True
        )
        wire.pump()
    responses = wire.of_ours(ev.ResponseReceived)
    assert [r.headers for r in responses] == [[(b"x-echo", b"%d" % i)] for i in range(20)]
    requests = wire.of_theirs(h2.events.RequestReceived)
    assert [dict(r.headers)[b":path"] for r in requests] == [b"/%d" % i for i in range(20)]
