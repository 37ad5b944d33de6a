"""HTTP/1.1 core without sockets: bytes in, events out; commands in, bytes out."""

from __future__ import annotations

import pytest

from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.h1 import ConnectionState, H1Connection
from caboose.errors import LocalProtocolError

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"


def test_get_is_a_head_with_end_stream_then_stream_ended() -> None:
    conn = H1Connection()
    events = conn.receive_data(GET)
    head = RequestReceived(
        1, b"GET", b"/a?b=1", [(b"host", b"x")], "1.1", end_stream=True, authority=b"x"
    )
    assert events == [head, StreamEnded(1)]


def test_header_names_are_lower_cased() -> None:
    conn = H1Connection()
    event, _ = conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: V\r\n\r\n")
    assert isinstance(event, RequestReceived)
    assert event.headers == [(b"host", b"x"), (b"x-mixed-case", b"V")]


def test_content_length_body() -> None:
    conn = H1Connection()
    events = conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
    events += conn.receive_data(b"lo")
    assert [type(e) for e in events] == [RequestReceived, DataReceived, DataReceived, StreamEnded]
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"hello"


def test_chunked_request_trailers_are_not_a_new_request() -> None:
    conn = H1Connection()
    events = conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n"
    )
    assert events[-2:] == [
        TrailersReceived(1, [(b"x-sum", b"42"), (b"x-other", b"y")]),
        StreamEnded(1),
    ]
    assert sum(isinstance(e, RequestReceived) for e in events) == 1


def test_pipelined_requests_get_increasing_stream_ids() -> None:
    conn = H1Connection()
    events = conn.receive_data(GET + GET + GET)
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [1, 2, 3]


def test_responses_must_go_in_request_order() -> None:
    conn = H1Connection()
    conn.receive_data(GET + GET)
    with pytest.raises(LocalProtocolError):
        conn.send_head(2, 200, [])
    conn.send_head(1, 200, [], end_stream=True)
    conn.send_head(2, 200, [], end_stream=True)
    assert conn.data_to_send().count(b"HTTP/1.1 200 OK") == 2


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        # RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host, with a valid value.
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_a_status_and_close(request_bytes: bytes, status: int) -> None:
    conn = H1Connection()
    conn.receive_data(request_bytes)
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 %d " % status), out
    assert b"connection: close" in out
    assert conn.state is ConnectionState.DONE


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",  # empty: a target with no authority (§3.2)
        b"GET / HTTP/1.0\r\n\r\n",  # HTTP/1.0 has no Host requirement
    ],
)
def test_valid_hosts_are_accepted(request_bytes: bytes) -> None:
    conn = H1Connection()
    event, _ = conn.receive_data(request_bytes)
    assert isinstance(event, RequestReceived) and conn.data_to_send() == b""


@pytest.mark.parametrize(
    "opening", [b"GARBAGE\r\n\r\n", b"INVALID CONNECTION PREFACE\r\n\r\n", b"\x00\x01\r\n"]
)
def test_a_first_line_that_is_not_http1_is_closed_without_an_answer(opening: bytes) -> None:
    """Not a malformed HTTP/1.x request but no HTTP/1.x at all: a 400 would be garbage to
    such a peer (an HTTP/2 client reads it as a frame header), so the connection just ends."""
    conn = H1Connection()
    events = conn.receive_data(opening)
    assert [type(event) for event in events] == [ConnectionTerminated]
    assert conn.data_to_send() == b"" and conn.state is ConnectionState.DONE


def test_not_http1_after_a_first_request_is_still_a_400() -> None:
    conn = H1Connection()
    event, _ = conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.send_response(event.stream_id, 200, [], b"ok")
    conn.data_to_send()
    conn.receive_data(b"GARBAGE\r\n\r\n")
    assert conn.data_to_send().startswith(b"HTTP/1.1 400 ")


def test_long_request_target_is_414() -> None:
    conn = H1Connection(max_request_line=100)
    conn.receive_data(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.data_to_send().startswith(b"HTTP/1.1 414 ")


def test_too_many_headers_is_431() -> None:
    conn = H1Connection(max_headers=10)
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(11))
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert conn.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_header_section_too_large_is_431_even_before_it_ends() -> None:
    conn = H1Connection(max_header_size=1000)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 600)
    assert conn.data_to_send() == b""
    conn.receive_data(b"a" * 600)
    assert conn.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_error_after_a_pipelined_request_waits_for_its_response() -> None:
    conn = H1Connection()
    events = conn.receive_data(GET + b"BROKEN\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, StreamEnded]
    assert conn.data_to_send() == b""
    conn.send_head(1, 200, [], end_stream=True)
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 " in out
    assert conn.state is ConnectionState.DONE


def test_broken_body_terminates_the_stream() -> None:
    conn = H1Connection()
    events = conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZ"
    )
    assert isinstance(events[-1], ConnectionTerminated)
    assert conn.data_to_send().startswith(b"HTTP/1.1 400 ")


def test_peer_close_mid_request_is_reported() -> None:
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert conn.receive_data(b"") == [ConnectionTerminated(0, "peer closed mid-request")]


# -- responses -------------------------------------------------------------------------------


def respond(request: bytes, *commands: tuple[str, tuple, dict]) -> bytes:  # type: ignore[type-arg]
    conn = H1Connection()
    conn.receive_data(request)
    for name, args, kwargs in commands:
        getattr(conn, name)(1, *args, **kwargs)
    return conn.data_to_send()


def test_streamed_response_is_chunked() -> None:
    out = respond(
        GET,
        ("send_head", (200, []), {}),
        ("send_data", (b"hello",), {}),
        ("send_data", (b"",), {"end_stream": True}),
    )
    assert out.endswith(b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def test_trailers_follow_the_last_chunk() -> None:
    out = respond(
        GET,
        ("send_head", (200, []), {"trailers": True}),
        ("send_data", (b"abc",), {}),
        ("send_trailers", ([(b"x-checksum", b"1")],), {}),
    )
    assert out.endswith(b"3\r\nabc\r\n0\r\nx-checksum: 1\r\n\r\n")


def test_content_length_with_trailers_uses_chunked_and_checks_length() -> None:
    out = respond(
        GET,
        ("send_head", (200, [(b"content-length", b"3")]), {"trailers": True}),
        ("send_data", (b"abc",), {}),
        ("send_trailers", ([(b"x-t", b"1")],), {}),
    )
    assert b"content-length" not in out
    assert b"transfer-encoding: chunked" in out
    conn = H1Connection()
    conn.receive_data(GET)
    conn.send_head(1, 200, [(b"content-length", b"3")], trailers=True)
    with pytest.raises(LocalProtocolError, match="longer"):
        conn.send_data(1, b"abcd")


def test_head_response_has_no_body_but_keeps_content_length() -> None:
    out = respond(
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        ("send_head", (200, [(b"content-length", b"13")]), {}),
        ("send_data", (b"Hello, world!",), {"end_stream": True}),
    )
    assert out.endswith(b"content-length: 13\r\n\r\n")


def test_http10_without_length_is_close_delimited() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    conn.send_head(1, 200, [])
    conn.send_data(1, b"abc", end_stream=True)
    out = conn.data_to_send()
    assert b"connection: close" in out and out.endswith(b"\r\n\r\nabc")
    assert conn.state is ConnectionState.DONE


def test_http10_keep_alive_with_length() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    conn.send_head(1, 200, [(b"content-length", b"3")])
    conn.send_data(1, b"abc", end_stream=True)
    assert b"connection: keep-alive" in conn.data_to_send()
    assert conn.state is ConnectionState.OPEN


def test_connection_close_request_ends_after_response() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET)
    conn.send_head(1, 200, [], end_stream=True)
    assert b"connection: close" in conn.data_to_send()
    assert conn.state is ConnectionState.DONE


def test_body_longer_than_content_length_is_refused_and_aborts() -> None:
    conn = H1Connection()
    conn.receive_data(GET)
    conn.send_head(1, 200, [(b"content-length", b"2")])
    with pytest.raises(LocalProtocolError):
        conn.send_data(1, b"abc")
    assert conn.state is ConnectionState.DONE


@pytest.mark.parametrize(
    "field", [(b"x-a", b"1\r\nx-b: 2"), (b"x-a", b"1\n"), (b"x-a", b"\x00"), (b"x a", b"1")]
)
def test_bad_response_fields_raise_and_are_never_written(field: tuple[bytes, bytes]) -> None:
    conn = H1Connection()
    conn.receive_data(GET)
    with pytest.raises(LocalProtocolError):
        conn.send_head(1, 200, [field])
    assert conn.data_to_send() == b""


def test_100_continue_and_http10_skips_it() -> None:
    conn = H1Connection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    conn.send_informational(1, 100, [])
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn = H1Connection()
    conn.receive_data(b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\n")
    conn.send_informational(1, 100, [])
    assert conn.data_to_send() == b""


def test_default_headers_added_unless_app_set_them() -> None:
    conn = H1Connection()
    conn.default_headers = [(b"server", b"caboose"), (b"date", b"today")]
    conn.receive_data(GET)
    conn.send_head(1, 200, [(b"Server", b"mine")], end_stream=True)
    out = conn.data_to_send()
    assert b"Server: mine" in out and b"server: caboose" not in out and b"date: today" in out


def test_no_content_statuses_have_no_framing() -> None:
    out = respond(GET, ("send_head", (204, []), {}), ("send_data", (b"",), {"end_stream": True}))
    assert b"transfer-encoding" not in out and b"content-length" not in out
