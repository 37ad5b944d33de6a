"""The HTTP/1.1 core in the client role: against h11 (an independent implementation), against
our own server core (both roles at once), and over a real socket to real servers."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.h1 import ConnectionState, H1Connection
from caboose.core.h1_client import H1ClientConnection
from caboose.core.h2.frames import FrameType
from caboose.errors import LocalProtocolError
from tests.serving import running

HOST = [(b"host", b"example.test")]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- what we write, read by h11 ------------------------------------------------------------


def h11_server_reads(data: bytes) -> list[Any]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    out = []
    while True:
        event = server.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return out
        out.append(event)
        if isinstance(event, h11.EndOfMessage):
            server.start_next_cycle() if server.our_state is h11.DONE else None


def test_a_bodiless_request_reads_as_one_in_h11() -> None:
    client = H1ClientConnection()
    assert client.send_request(b"GET", b"/a?b=1", HOST, end_stream=True) == 1
    request, end = h11_server_reads(client.data_to_send())
    assert (request.method, request.target) == (b"GET", b"/a?b=1")
    assert isinstance(end, h11.EndOfMessage)


def test_a_streamed_body_goes_chunked_with_trailers() -> None:
    client = H1ClientConnection()
    stream_id = client.send_request(b"POST", b"/up", [*HOST, (b"te", b"trailers")])
    client.send_data(stream_id, b"abc")
    client.send_data(stream_id, b"de")
    client.send_trailers(stream_id, [(b"x-checksum", b"7")])
    request, *pieces, end = h11_server_reads(client.data_to_send())
    assert (b"transfer-encoding", b"chunked") in request.headers.raw_items()
    assert b"".join(bytes(p.data) for p in pieces) == b"abcde"
    assert list(end.headers.raw_items()) == [(b"x-checksum", b"7")]


def test_a_declared_length_is_kept_and_enforced() -> None:
    client = H1ClientConnection()
    stream_id = client.send_request(b"PUT", b"/", [*HOST, (b"content-length", b"3")])
    with pytest.raises(LocalProtocolError):
        client.send_data(stream_id, b"abcd")
    other = H1ClientConnection()
    stream_id = other.send_request(b"PUT", b"/", [*HOST, (b"content-length", b"3")])
    other.send_data(stream_id, b"abc", end_stream=True)
    _, data, _ = h11_server_reads(other.data_to_send())
    assert bytes(data.data) == b"abc"
    with pytest.raises(LocalProtocolError):
        other.send_trailers(stream_id, [(b"x", b"1")])


def test_bad_requests_are_refused_before_they_are_written() -> None:
    client = H1ClientConnection()
    with pytest.raises(LocalProtocolError):
        client.send_request(b"GET", b"/", [], end_stream=True)  # no Host
    with pytest.raises(LocalProtocolError):
        client.send_request(b"GET", b"/ x", HOST, end_stream=True)
    with pytest.raises(LocalProtocolError):
        client.send_request(b"GET", b"/", [*HOST, (b"x", b"a\r\nb")], end_stream=True)
    assert client.data_to_send() == b""


# -- what h11 writes, read by us -----------------------------------------------------------


def h11_responses(*responses: tuple[int, list[tuple[bytes, bytes]], bytes, list[Any]]) -> bytes:
    """Serialise responses with h11 (status, headers, body, trailers) for GET requests."""
    out = b""
    server = h11.Connection(h11.SERVER)
    for status, headers, body, trailers in responses:
        server.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        server.next_event()
        server.next_event()
        out += server.send(h11.Response(status_code=status, headers=headers)) or b""
        if body:
            out += server.send(h11.Data(data=body)) or b""
        out += server.send(h11.EndOfMessage(headers=trailers)) or b""
        server.start_next_cycle()
    return out


def test_pipelined_responses_from_h11_read_in_order() -> None:
    client = H1ClientConnection()
    first = client.send_request(b"GET", b"/1", HOST, end_stream=True)
    second = client.send_request(b"GET", b"/2", HOST, end_stream=True)
    wire = h11_responses(
        (200, [(b"content-length", b"5")], b"hello", []),
        (200, [(b"transfer-encoding", b"chunked")], b"abc", [(b"x-t", b"1")]),
    )
    events = client.receive_data(wire)
    assert kinds(events) == [
        "ResponseReceived",
        "DataReceived",
        "StreamEnded",
        "ResponseReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    assert [e.stream_id for e in events if isinstance(e, StreamEnded)] == [first, second]
    data = [e for e in events if isinstance(e, DataReceived)]
    assert (data[0].data, data[0].end_stream) == (b"hello", True)
    assert (data[1].data, data[1].end_stream) == (b"abc", False)
    trailers = next(e for e in events if isinstance(e, TrailersReceived))
    assert trailers.headers == [(b"x-t", b"1")]


def test_byte_by_byte_makes_no_difference() -> None:
    wire = h11_responses((200, [(b"transfer-encoding", b"chunked")], b"abcdef", [(b"x", b"y")]))
    client = H1ClientConnection()
    client.send_request(b"GET", b"/", HOST, end_stream=True)
    events: list[Event] = []
    for index in range(len(wire)):
        events += client.receive_data(wire[index : index + 1])
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert body == b"abcdef" and kinds(events)[-2:] == ["TrailersReceived", "StreamEnded"]


def test_a_response_to_head_has_no_body_whatever_its_length_says() -> None:
    client = H1ClientConnection()
    client.send_request(b"HEAD", b"/", HOST, end_stream=True)
    client.send_request(b"GET", b"/", HOST, end_stream=True)
    events = client.receive_data(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    )
    assert kinds(events) == [
        "ResponseReceived",
        "StreamEnded",
        "ResponseReceived",
        "DataReceived",
        "StreamEnded",
    ]
    head = events[0]
    assert isinstance(head, ResponseReceived) and head.end_stream
    assert isinstance(events[3], DataReceived) and events[3].data == b"ok"


def test_informational_responses_come_before_the_final_one() -> None:
    client = H1ClientConnection()
    client.send_request(b"GET", b"/", HOST, end_stream=True)
    events = client.receive_data(
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    )
    assert kinds(events) == ["InformationalResponseReceived", "ResponseReceived", "StreamEnded"]
    hint = events[0]
    assert isinstance(hint, InformationalResponseReceived) and hint.status == 103


def test_a_close_delimited_body_ends_with_the_connection() -> None:
    client = H1ClientConnection()
    client.send_request(b"GET", b"/", HOST, end_stream=True)
    events = client.receive_data(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    events += client.receive_data(b"")
    assert kinds(events) == [
        "ResponseReceived",
        "DataReceived",
        "StreamEnded",
        "ConnectionTerminated",
    ]


def test_a_cut_response_says_so() -> None:
    client = H1ClientConnection()
    client.send_request(b"GET", b"/", HOST, end_stream=True)
    client.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    (end,) = client.receive_data(b"")
    assert isinstance(end, ConnectionTerminated) and end.reason == "peer closed mid-response"


def test_malformed_and_oversized_responses_end_the_connection() -> None:
    for wire in (b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000):
        client = H1ClientConnection()
        client.send_request(b"GET", b"/", HOST, end_stream=True)
        (event,) = client.receive_data(wire)
        assert isinstance(event, ConnectionTerminated) and event.error_code != 0
        assert client.state is ConnectionState.DONE


def test_101_switches_and_keeps_the_new_protocols_bytes() -> None:
    client = H1ClientConnection()
    client.send_request(
        b"GET", b"/", [*HOST, (b"connection", b"upgrade"), (b"upgrade", b"chat")], end_stream=True
    )
    events = client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: chat\r\n\r\nhi"
    )
    assert kinds(events) == ["ResponseReceived", "StreamEnded"]
    assert isinstance(events[0], ResponseReceived) and events[0].status == 101
    assert client.receive_data(b" there") == []
    assert client.state is ConnectionState.SWITCHED
    assert client.trailing_data() == b"hi there"


# -- both roles: our client core against our server core -----------------------------------


def test_both_roles_in_memory_trailers_both_ways() -> None:
    client, server = H1ClientConnection(), H1Connection()
    stream_id = client.send_request(b"POST", b"/echo", [*HOST, (b"te", b"trailers")])
    client.send_data(stream_id, b"ping")
    client.send_trailers(stream_id, [(b"x-in", b"1")])
    received = server.receive_data(client.data_to_send())
    assert kinds(received) == [
        "RequestReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    head = received[0]
    assert isinstance(head, RequestReceived) and head.accepts_trailers
    server.send_head(1, 200, [], trailers=True)
    server.send_data(1, b"pong")
    server.send_trailers(1, [(b"x-out", b"2")])
    events = client.receive_data(server.data_to_send())
    assert kinds(events) == ["ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    assert next(e for e in events if isinstance(e, TrailersReceived)).headers == [(b"x-out", b"2")]


# -- over a real socket ----------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"you asked for {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stdlib_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_keep_alive_requests_to_the_stdlib_server(stdlib_server: int) -> None:
    client = H1ClientConnection()
    for path in (b"/one", b"/two"):
        client.send_request(b"GET", path, HOST, end_stream=True)
    events: list[Event] = []
    with socket.create_connection(("127.0.0.1", stdlib_server), timeout=5) as sock:
        sock.sendall(client.data_to_send())
        while sum(isinstance(e, StreamEnded) for e in events) < 2:
            chunk = sock.recv(65536)
            assert chunk, "the server closed early"
            events += client.receive_data(chunk)
    bodies = [e.data for e in events if isinstance(e, DataReceived)]
    assert b"".join(bodies) == b"you asked for /oneyou asked for /two"


def test_101_from_a_real_server_then_its_http2_preface() -> None:
    """caboose with --h2c-upgrade answers 101; the bytes after it are HTTP/2 frames."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"over h2"})

    client = H1ClientConnection()
    headers = [
        *HOST,
        (b"connection", b"Upgrade, HTTP2-Settings"),
        (b"upgrade", b"h2c"),
        (b"http2-settings", b""),
    ]
    client.send_request(b"GET", b"/", headers, end_stream=True)
    with (
        running(app, h2c_upgrade=True) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(client.data_to_send())
        events: list[Event] = []
        while client.state is not ConnectionState.SWITCHED:
            chunk = sock.recv(65536)
            assert chunk, "closed before the 101"
            events += client.receive_data(chunk)
        rest = client.trailing_data()
        while len(rest) < 9:
            rest += sock.recv(65536)
    switched = events[0]
    assert isinstance(switched, ResponseReceived) and switched.status == 101
    assert rest[3] == FrameType.SETTINGS  # RFC 9113 §3.2: the server's preface, first
