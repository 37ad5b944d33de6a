"""Our HTTP/2 client role against our server role, wired together without sockets."""

from __future__ import annotations

from typing import Any

import pytest

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
from caboose.core.h2.connection import ConnectionState, H2Connection
from caboose.core.h2.limits import FloodGuard
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode, LocalProtocolError

from .rawpeer import POST, REQUEST

W = SettingCode.INITIAL_WINDOW_SIZE


class Pair:
    """A client and a server connection; ``pump`` moves bytes until both are quiet."""

    def __init__(self, client: dict[str, Any] | None = None, server: dict[str, Any] | None = None):
        self.client = H2Connection(client_side=True, **(client or {}))
        self.server = H2Connection(client_side=False, **(server or {}))
        self.client.initiate()
        self.server.initiate()
        self.pump()

    def pump(self) -> tuple[list[Event], list[Event]]:
        client_events: list[Event] = []
        server_events: list[Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return client_events, server_events
            if to_server:  # bytes, as a transport gives (data_to_send may be a bytearray)
                server_events += self.server.receive_data(bytes(to_server))
            if to_client:
                client_events += self.client.receive_data(bytes(to_client))

    def request(self, fields: list[tuple[bytes, bytes]] = REQUEST, end_stream: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, fields, end_stream=end_stream)
        return stream_id


def of_type(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_handshake_exchanges_and_acknowledges_settings() -> None:
    pair = Pair()
    assert not pair.client.settings_ack_pending and not pair.server.settings_ack_pending
    assert pair.client.peer.max_concurrent_streams == 100
    assert pair.server.peer.enable_push == 0
    assert pair.client.state is pair.server.state is ConnectionState.OPEN


def test_get_round_trip() -> None:
    pair = Pair()
    stream_id = pair.request([*REQUEST, (b"user-agent", b"caboose-test")])
    _, server_events = pair.pump()
    assert server_events == [
        RequestReceived(
            1,
            b"GET",
            b"/",
            [(b"user-agent", b"caboose-test")],
            "2",
            True,
            b"http",
            b"example.com",
        ),
        StreamEnded(1),
    ]
    pair.server.send_head(stream_id, 200, [(b"content-type", b"text/plain")])
    pair.server.send_data(stream_id, b"Hello, world!", end_stream=True)
    client_events, _ = pair.pump()
    assert client_events == [
        ResponseReceived(1, 200, [(b"content-type", b"text/plain")], "2", False),
        DataReceived(1, b"Hello, world!", 13, True),
        StreamEnded(1),
    ]
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_trailers_both_ways() -> None:
    pair = Pair()
    stream_id = pair.request([*POST, (b"te", b"trailers")], end_stream=False)
    pair.client.send_data(stream_id, b"request body")
    pair.client.send_trailers(stream_id, [(b"x-request-checksum", b"123")])
    _, server_events = pair.pump()
    assert server_events[1:] == [
        DataReceived(stream_id, b"request body", 12, False),
        TrailersReceived(stream_id, [(b"x-request-checksum", b"123")]),
        StreamEnded(stream_id),
    ]
    pair.server.send_headers(stream_id, [(b":status", b"200"), (b"trailer", b"grpc-status")])
    pair.server.send_data(stream_id, b"response body")
    pair.server.send_trailers(stream_id, [(b"grpc-status", b"0"), (b"grpc-message", b"ok")])
    client_events, _ = pair.pump()
    assert client_events == [
        ResponseReceived(stream_id, 200, [(b"trailer", b"grpc-status")], "2", False),
        DataReceived(stream_id, b"response body", 13, False),
        TrailersReceived(stream_id, [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]),
        StreamEnded(stream_id),
    ]
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_trailers_without_body() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.pump()
    pair.server.send_head(stream_id, 200, [])
    pair.server.send_trailers(stream_id, [(b"x-t", b"1")])
    client_events, _ = pair.pump()
    assert [type(e) for e in client_events] == [ResponseReceived, TrailersReceived, StreamEnded]


def test_informational_then_final() -> None:
    pair = Pair()
    stream_id = pair.request([*POST, (b"expect", b"100-continue")], end_stream=False)
    pair.pump()
    pair.server.send_informational(stream_id, 100, [])
    pair.server.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</s.css>")])
    pair.server.send_head(stream_id, 204, [], end_stream=True)
    client_events, _ = pair.pump()
    assert client_events == [
        InformationalResponseReceived(stream_id, 100, []),
        InformationalResponseReceived(stream_id, 103, [(b"link", b"</s.css>")]),
        ResponseReceived(stream_id, 204, [], "2", True),
        StreamEnded(stream_id),
    ]
    # The request side is still open: the client may finish its body.
    pair.client.send_data(stream_id, b"late body", end_stream=True)
    _, server_events = pair.pump()
    assert server_events == [DataReceived(stream_id, b"late body", 9, True), StreamEnded(1)]


def _transfer(
    sender: H2Connection, receiver: H2Connection, pair: Pair, stream_id: int, body: bytes
) -> bytes:
    """Send ``body`` as fast as the windows allow; the receiver acknowledges what it gets."""
    received = bytearray()
    sent = 0
    ended = False
    while not ended:
        room = sender.sendable(stream_id)
        if sent < len(body) and room:
            chunk = body[sent : sent + room]
            sent += len(chunk)
            sender.send_data(stream_id, chunk, end_stream=sent == len(body))
        client_events, server_events = pair.pump()
        events = server_events if receiver is pair.server else client_events
        for event in events:
            if isinstance(event, DataReceived):
                received += event.data
                receiver.acknowledge(event.stream_id, event.flow_controlled_length)
            ended = ended or isinstance(event, StreamEnded)
        assert sent == len(body) or room or sender.sendable(stream_id), "flow control stalled"
    return bytes(received)


SMALL = {"local_settings": {W: 65_535}, "connection_window": 65_535}


def test_big_request_body_across_windows() -> None:
    pair = Pair(server=SMALL)
    body = bytes(range(256)) * 4096  # 1 MiB, sixteen times the windows
    stream_id = pair.request(POST, end_stream=False)
    pair.pump()
    assert _transfer(pair.client, pair.server, pair, stream_id, body) == body


def test_big_response_body_across_windows() -> None:
    pair = Pair(client=SMALL)
    body = b"0123456789abcdef" * 200_000  # 3.2 MB
    stream_id = pair.request()
    pair.pump()
    pair.server.send_head(stream_id, 200, [(b"content-length", b"%d" % len(body))])
    assert _transfer(pair.server, pair.client, pair, stream_id, body) == body


def test_many_interleaved_streams() -> None:
    pair = Pair(server=SMALL, client=SMALL)
    ids = [pair.request(POST, end_stream=False) for _ in range(50)]
    for stream_id in ids:
        pair.client.send_data(stream_id, b"req-%d" % stream_id, end_stream=True)
    _, server_events = pair.pump()
    assert len(of_type(server_events, StreamEnded)) == 50
    for stream_id in reversed(ids):
        pair.server.send_head(stream_id, 200, [])
        pair.server.send_data(stream_id, b"resp-%d" % stream_id, end_stream=True)
    client_events, _ = pair.pump()
    bodies = {e.stream_id: e.data for e in of_type(client_events, DataReceived)}
    assert bodies == {stream_id: b"resp-%d" % stream_id for stream_id in ids}


def test_client_reset() -> None:
    pair = Pair()
    stream_id = pair.request(POST, end_stream=False)
    pair.pump()
    pair.client.reset_stream(stream_id, ErrorCode.CANCEL)
    _, server_events = pair.pump()
    assert server_events == [StreamReset(stream_id, ErrorCode.CANCEL, remote=True)]
    with pytest.raises(LocalProtocolError):
        pair.server.send_head(stream_id, 200, [])
    assert pair.server.sendable(stream_id) == 0


def test_server_reset() -> None:
    pair = Pair()
    stream_id = pair.request(POST, end_stream=False)
    pair.pump()
    pair.server.reset_stream(stream_id, ErrorCode.INTERNAL_ERROR)
    pair.server.reset_stream(stream_id)  # already closed: nothing more happens
    client_events, _ = pair.pump()
    assert client_events == [StreamReset(stream_id, ErrorCode.INTERNAL_ERROR, remote=True)]
    with pytest.raises(LocalProtocolError):
        pair.client.send_data(stream_id, b"x")


def test_reset_of_an_idle_stream_is_refused() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.server.reset_stream(1)


def test_goaway_stops_new_streams() -> None:
    pair = Pair()
    first = pair.request(end_stream=True)
    pair.pump()
    second = pair.request(end_stream=True)  # crosses the GOAWAY
    pair.server.goaway()
    client_events, server_events = pair.pump()
    assert GoAwayReceived(first, 0, b"") in client_events
    assert StreamReset(second, ErrorCode.REFUSED_STREAM, remote=True) in client_events
    assert server_events == []  # the server ignored the stream above its last id
    with pytest.raises(LocalProtocolError):
        pair.request()
    pair.server.send_head(first, 200, [], end_stream=True)
    client_events, _ = pair.pump()
    assert of_type(client_events, StreamEnded) == [StreamEnded(first)]
    assert pair.server.open_streams == pair.client.open_streams == 0


def test_graceful_goaway_in_two_steps() -> None:
    pair = Pair()
    pair.server.goaway(last_stream_id=2**31 - 1)
    pair.pump()
    assert pair.client.goaway_received == 2**31 - 1
    with pytest.raises(LocalProtocolError):
        pair.request()
    pair.server.goaway()
    client_events, _ = pair.pump()
    assert client_events == [GoAwayReceived(0, 0, b"")]


def test_goaway_with_error_from_client() -> None:
    pair = Pair()
    pair.client.goaway(ErrorCode.PROTOCOL_ERROR, debug=b"bad")
    _, server_events = pair.pump()
    assert server_events == [GoAwayReceived(0, ErrorCode.PROTOCOL_ERROR, b"bad")]
    assert pair.client.state is ConnectionState.CLOSED
    assert pair.server.receive_data(b"") == [ConnectionTerminated(0, "the peer closed")]


def test_settings_change_limits_the_client() -> None:
    pair = Pair()
    pair.server.update_settings({SettingCode.MAX_CONCURRENT_STREAMS: 1})
    assert pair.server.settings_ack_pending
    client_events, server_events = pair.pump()
    assert client_events == [SettingsChanged({SettingCode.MAX_CONCURRENT_STREAMS: (100, 1)})]
    assert server_events == [SettingsAcknowledged()]
    pair.request(end_stream=False)
    with pytest.raises(LocalProtocolError):
        pair.request()


def test_initial_window_increase_opens_streams() -> None:
    pair = Pair(client={"local_settings": {W: 10}})
    stream_id = pair.request()
    pair.pump()
    pair.server.send_head(stream_id, 200, [])
    assert pair.server.sendable(stream_id) == 10
    pair.client.update_settings({W: 1000})
    _, server_events = pair.pump()
    assert WindowOpened(0, 990) in server_events
    assert pair.server.sendable(stream_id) == 1000


def test_header_table_size_zero_still_round_trips() -> None:
    pair = Pair(client={"local_settings": {SettingCode.HEADER_TABLE_SIZE: 0}})
    for _ in range(3):
        stream_id = pair.request()
        pair.pump()
        pair.server.send_head(stream_id, 200, [(b"x-custom", b"value")], end_stream=True)
        client_events, _ = pair.pump()
        assert client_events[0] == ResponseReceived(
            stream_id, 200, [(b"x-custom", b"value")], "2", True
        )
    assert pair.server._encoder._max_size == 0


def test_ping_both_ways() -> None:
    pair = Pair()
    pair.client.ping(b"clientpi")
    pair.server.ping(b"serverpi")
    client_events, server_events = pair.pump()
    assert client_events == [PingReceived(b"serverpi"), PingAcknowledged(b"clientpi")]
    assert server_events == [PingReceived(b"clientpi"), PingAcknowledged(b"serverpi")]
    with pytest.raises(LocalProtocolError):
        pair.client.ping(b"short")


def test_acknowledge_after_the_stream_ended() -> None:
    pair = Pair(server=SMALL)
    stream_id = pair.request(POST, end_stream=False)
    pair.client.send_data(stream_id, b"x" * 40_000, end_stream=True)
    pair.pump()
    pair.server.send_head(stream_id, 200, [], end_stream=True)
    pair.pump()
    assert pair.server.open_streams == 0
    pair.server.acknowledge(stream_id, 40_000)  # the app read the body after responding
    pair.pump()
    assert pair.client.sendable(pair.request(POST, end_stream=False)) == 65_535


def test_send_errors() -> None:
    pair = Pair()
    stream_id = pair.request(POST, end_stream=False)
    pair.pump()
    server = pair.server
    with pytest.raises(LocalProtocolError):
        server.send_data(stream_id, b"body before head")
    with pytest.raises(LocalProtocolError):
        server.send_trailers(stream_id, [(b"x", b"1")])
    with pytest.raises(LocalProtocolError):
        server.send_head(stream_id, 99, [])
    with pytest.raises(LocalProtocolError):
        server.send_informational(stream_id, 101, [])
    with pytest.raises(LocalProtocolError):
        server.send_headers(stream_id, [(b":status", b"200"), (b":path", b"/")])
    with pytest.raises(LocalProtocolError):
        server.send_head(stream_id, 200, [(b"x-bad", b"a\r\nb")])
    server.send_head(stream_id, 200, [])
    with pytest.raises(LocalProtocolError):
        server.send_head(stream_id, 200, [])
    with pytest.raises(LocalProtocolError):
        server.send_trailers(stream_id, [(b":status", b"200")])
    with pytest.raises(LocalProtocolError) as info:
        server.send_data(stream_id, b"x" * (server.sendable(stream_id) + 1))
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    with pytest.raises(LocalProtocolError):
        pair.client.send_head(stream_id, 200, [])
    with pytest.raises(LocalProtocolError):
        pair.client.send_headers(3, [(b":method", b"GET")])


def test_outgoing_fields_are_normalised() -> None:
    pair = Pair()
    stream_id = pair.request(
        [*REQUEST, (b"Connection", b"keep-alive"), (b"TE", b"gzip"), (b"X-Mixed", b"1")]
    )
    _, server_events = pair.pump()
    assert of_type(server_events, RequestReceived)[0].headers == [(b"x-mixed", b"1")]
    asgi_style: Any = [[b"Transfer-Encoding", b"chunked"], (b"A", b"b")]  # lists are fine too
    pair.server.send_head(stream_id, 200, asgi_style)
    client_events, _ = pair.pump()
    assert of_type(client_events, ResponseReceived)[0].headers == [(b"a", b"b")]


def test_ping_flood_is_calmed() -> None:
    pair = Pair(server={"flood": FloodGuard(max_unflushed_acks=10)})
    for _ in range(11):
        pair.client.ping(b"floodpin")
    events = pair.server.receive_data(bytes(pair.client.data_to_send()))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_acks_flushed_reset_the_ping_budget() -> None:
    pair = Pair(server={"flood": FloodGuard(max_unflushed_acks=10)})
    for _ in range(5):
        for _ in range(10):
            pair.client.ping(b"pingpong")
        pair.pump()
    assert pair.server.state is ConnectionState.OPEN


def test_rapid_reset_is_calmed_and_refill_restores() -> None:
    pair = Pair(server={"flood": FloodGuard(max_resets=20)})
    for _ in range(20):
        pair.client.reset_stream(pair.request(end_stream=False))
    pair.pump()
    assert pair.server.state is ConnectionState.OPEN
    pair.server.flood.refill()
    for _ in range(21):
        pair.client.reset_stream(pair.request(end_stream=False))
    _, server_events = pair.pump()
    assert isinstance(server_events[-1], ConnectionTerminated)
    assert server_events[-1].error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_empty_data_flood_is_calmed() -> None:
    pair = Pair(server={"flood": FloodGuard(max_empty_frames=5)})
    stream_id = pair.request(POST, end_stream=False)
    for _ in range(6):
        pair.client.send_data(stream_id, b"")
    _, server_events = pair.pump()
    assert server_events[-1].error_code == ErrorCode.ENHANCE_YOUR_CALM  # type: ignore[attr-defined]


def test_disabled_limits() -> None:
    guard = FloodGuard(max_unflushed_acks=None, max_empty_frames=None, max_resets=None)
    for _ in range(10_000):
        guard.ack_queued()
        guard.empty_frame()
        guard.reset()
    assert guard.resets_left is None and guard.empty_frames_left is None


def test_invalid_local_settings_are_refused() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.server.update_settings({SettingCode.MAX_FRAME_SIZE: 100})
    with pytest.raises(LocalProtocolError):
        pair.server.update_settings({SettingCode.ENABLE_PUSH: 1})  # servers never push


def test_stream_state_and_counters() -> None:
    pair = Pair()
    stream_id = pair.request(POST, end_stream=False)
    assert pair.client.stream_state(stream_id).name == "OPEN"
    pair.client.send_data(stream_id, b"x", end_stream=True)
    pair.pump()
    assert pair.client.stream_state(stream_id).name == "HALF_CLOSED_LOCAL"
    assert pair.server.stream_state(stream_id).name == "HALF_CLOSED_REMOTE"
    assert pair.server.highest_peer_stream_id == stream_id
    assert pair.server.open_streams == 1
    assert pair.client.stream_state(99).name == "IDLE"
