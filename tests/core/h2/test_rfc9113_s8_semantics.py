"""RFC 9113 §8 (h2spec 8.1-8.3): HTTP messages, field validity, pseudo-headers; both roles."""

from __future__ import annotations

from typing import Any

import pytest

from caboose.core.events import (
    DataReceived,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode

from .rawpeer import POST, REQUEST, Fields, RawClient, RawServer, T

P = ErrorCode.PROTOCOL_ERROR


def _malformed_request(fields: Fields, *, end_stream: bool = True, **kwargs: Any) -> None:
    client = RawClient(**kwargs).handshake()
    events = client.send(client.headers(1, fields, end_stream=end_stream))
    assert not [e for e in events if isinstance(e, RequestReceived)]
    client.expect_stream_error(1, P)


# --- §8.1 message framing -------------------------------------------------------------------------


def test_request_event_carries_pseudo_headers_apart() -> None:
    client = RawClient().handshake()
    events = client.send(client.headers(1, [*REQUEST, (b"accept", b"*/*")]))
    assert events == [
        RequestReceived(
            1, b"GET", b"/", [(b"accept", b"*/*")], "2", True, b"http", b"example.com", b""
        ),
        StreamEnded(1),
    ]


def test_request_with_body_and_trailers() -> None:
    client = RawClient().handshake()
    events = client.send(
        client.headers(1, [*POST, (b"te", b"trailers")], end_stream=False),
        client.data(1, b"body"),
        client.headers(1, [(b"x-checksum", b"abc")], end_stream=True),
    )
    assert events[1:] == [
        DataReceived(1, b"body", 4, False),
        TrailersReceived(1, [(b"x-checksum", b"abc")]),
        StreamEnded(1),
    ]


def test_second_headers_without_end_stream() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False), client.data(1, b"test"))
    client.send(client.headers(1, [(b"x-test", b"ok")], end_stream=False))
    assert client.events[-1] == StreamReset(1, P, remote=False)
    client.expect_stream_error(1, P)


def test_pseudo_header_in_trailers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.headers(1, [(b":method", b"POST")], end_stream=True))
    client.expect_stream_error(1, P)


def test_invalid_field_in_trailers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.headers(1, [(b"X-Upper", b"1")], end_stream=True))
    client.expect_stream_error(1, P)


def test_data_after_trailers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, POST, end_stream=False))
    client.send(client.headers(1, [(b"x-t", b"1")], end_stream=True))
    client.send(client.data(1, b"late"))
    client.expect_stream_error(1, ErrorCode.STREAM_CLOSED)


def test_too_large_header_list_gets_431() -> None:
    client = RawClient(local_settings={SettingCode.MAX_HEADER_LIST_SIZE: 1000}).handshake()
    big = [*POST, (b"x-big", b"v" * 2000)]
    assert client.send(client.headers(1, big, end_stream=False)) == []
    frames = client.output()
    assert [f[0] for f in frames] == [T.HEADERS, T.RST_STREAM]
    assert frames[1][3] == bytes(4)  # NO_ERROR: stop sending, the response is complete
    assert client.send(client.data(1, b"ignored", end_stream=True)) == []
    assert isinstance(client.send(client.headers(3))[0], RequestReceived)


# --- §8.1.1 content-length ------------------------------------------------------------------------


def test_content_length_exceeded_by_data() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, [*POST, (b"content-length", b"3")], end_stream=False))
    client.send(client.data(1, b"te"), client.data(1, b"st", end_stream=True))
    client.expect_stream_error(1, P)


def test_content_length_not_reached_at_end() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, [*POST, (b"content-length", b"10")], end_stream=False))
    client.send(client.data(1, b"test", end_stream=True))
    client.expect_stream_error(1, P)


def test_content_length_not_reached_at_trailers() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, [*POST, (b"content-length", b"10")], end_stream=False))
    client.send(client.data(1, b"test"), client.headers(1, [(b"x-t", b"1")], end_stream=True))
    client.expect_stream_error(1, P)


def test_content_length_with_end_stream_on_headers() -> None:
    _malformed_request([*POST, (b"content-length", b"4")], end_stream=True)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1, 2", b"", b"0x10"])
def test_invalid_content_length(value: bytes) -> None:
    _malformed_request([*POST, (b"content-length", value)], end_stream=False)


def test_content_length_matching() -> None:
    client = RawClient().handshake()
    client.send(client.headers(1, [*POST, (b"content-length", b"4, 4")], end_stream=False))
    events = client.send(client.data(1, b"te"), client.data(1, b"st", end_stream=True))
    assert events[-1] == StreamEnded(1)


# --- §8.2 field validity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        (b"X-TEST", b"ok"),
        (b"x test", b"ok"),
        (b"x:test", b"ok"),
        (b"", b"ok"),
        (b"x-test\x00", b"ok"),
        (b"x-\xfftest", b"ok"),
        (b"x-test", b"o\x00k"),
        (b"x-test", b"o\rk"),
        (b"x-test", b"o\nk"),
        (b"x-test", b" ok"),
        (b"x-test", b"ok\t"),
    ],
)
def test_invalid_fields_are_malformed(field: tuple[bytes, bytes]) -> None:
    _malformed_request([*REQUEST, field])


@pytest.mark.parametrize(
    "name", [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
def test_connection_specific_fields(name: bytes) -> None:
    _malformed_request([*REQUEST, (name, b"x")])


def test_te_other_than_trailers() -> None:
    _malformed_request([*REQUEST, (b"te", b"trailers, deflate")])


def test_te_trailers_is_accepted() -> None:
    client = RawClient().handshake()
    event = client.send(client.headers(1, [*REQUEST, (b"te", b"trailers")]))[0]
    assert isinstance(event, RequestReceived) and event.headers == [(b"te", b"trailers")]


def test_cookie_crumbs_are_joined() -> None:
    client = RawClient().handshake()
    fields = [*REQUEST, (b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2")]
    event = client.send(client.headers(1, fields))[0]
    assert isinstance(event, RequestReceived)
    assert event.headers == [(b"cookie", b"a=1; b=2"), (b"accept", b"*/*")]


# --- §8.3 pseudo-header fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        [*REQUEST, (b":foo", b"bar")],
        [*REQUEST, (b":status", b"200")],
        [REQUEST[0], (b"accept", b"*/*"), *REQUEST[1:]],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b""), (b":authority", b"a")],
        REQUEST[1:],
        [REQUEST[0], *REQUEST[2:]],
        [*REQUEST[:2], REQUEST[3]],
        [*REQUEST, (b":method", b"GET")],
        [*REQUEST, (b":scheme", b"https")],
        [*REQUEST, (b":path", b"/other")],
        [*REQUEST, (b":authority", b"other")],
        [(b":method", b"G ET"), *REQUEST[1:]],
        [*REQUEST[:2], (b":path", b"noslash"), REQUEST[3]],
        [*REQUEST[:2], (b":path", b"*"), REQUEST[3]],
        [*REQUEST[:2], (b":path", b"/a b"), REQUEST[3]],
        [*REQUEST[:3], (b":authority", b"user@example.com")],
        [*REQUEST, (b"host", b"other.example")],
    ],
    ids=[
        "unknown",
        "response pseudo-header",
        "after a regular field",
        "empty :path",
        "no :method",
        "no :scheme",
        "no :path",
        "duplicate :method",
        "duplicate :scheme",
        "duplicate :path",
        "duplicate :authority",
        "invalid :method",
        "relative :path",
        "* for GET",
        "space in :path",
        "userinfo in :authority",
        "Host differs from :authority",
    ],
)
def test_malformed_request_pseudo_headers(fields: Fields) -> None:
    _malformed_request(fields)


def test_options_asterisk_is_accepted() -> None:
    client = RawClient().handshake()
    fields = [(b":method", b"OPTIONS"), (b":scheme", b"http"), (b":path", b"*")]
    event = client.send(client.headers(1, fields))[0]
    assert isinstance(event, RequestReceived) and event.target == b"*" and event.authority == b""


def test_connect_takes_only_authority() -> None:
    client = RawClient().handshake()
    fields = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    event = client.send(client.headers(1, fields, end_stream=False))[0]
    assert isinstance(event, RequestReceived)
    assert (event.method, event.authority, event.target, event.scheme) == (
        b"CONNECT",
        b"example.com:443",
        b"",
        b"",
    )


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"CONNECT")],
        [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
        [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":scheme", b"https")],
    ],
)
def test_malformed_connect(fields: Fields) -> None:
    _malformed_request(fields, end_stream=False)


_WEBSOCKET = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"https"),
    (b":path", b"/chat"),
    (b":authority", b"example.com"),
]


def test_protocol_without_enable_connect_protocol() -> None:
    _malformed_request(_WEBSOCKET, end_stream=False)


def test_extended_connect_when_enabled() -> None:
    client = RawClient(local_settings={SettingCode.ENABLE_CONNECT_PROTOCOL: 1}).handshake()
    event = client.send(client.headers(1, _WEBSOCKET, end_stream=False))[0]
    assert isinstance(event, RequestReceived)
    assert (event.method, event.protocol, event.target) == (b"CONNECT", b"websocket", b"/chat")


def test_protocol_with_another_method() -> None:
    fields = [(b":method", b"GET"), *_WEBSOCKET[1:]]
    _malformed_request(fields, local_settings={SettingCode.ENABLE_CONNECT_PROTOCOL: 1})


@pytest.mark.parametrize("missing", [b":path", b":scheme", b":authority"])
def test_extended_connect_needs_path_scheme_and_authority(missing: bytes) -> None:
    # RFC 8441 §4 and §5: the target of an extended CONNECT is a full URI.
    fields = [f for f in _WEBSOCKET if f[0] != missing]
    _malformed_request(fields, local_settings={SettingCode.ENABLE_CONNECT_PROTOCOL: 1})


# --- client role: responses (§8.1, §8.3.2) --------------------------------------------------------


def _server() -> tuple[RawServer, int]:
    server = RawServer().handshake()
    return server, server.request()


def test_response_with_body_and_trailers() -> None:
    server, stream_id = _server()
    events = server.send(
        server.headers(stream_id, [(b":status", b"200"), (b"x-a", b"1")], end_stream=False),
        server.data(stream_id, b"hello"),
        server.headers(stream_id, [(b"grpc-status", b"0")], end_stream=True),
    )
    assert events == [
        ResponseReceived(stream_id, 200, [(b"x-a", b"1")], "2", False),
        DataReceived(stream_id, b"hello", 5, False),
        TrailersReceived(stream_id, [(b"grpc-status", b"0")]),
        StreamEnded(stream_id),
    ]
    assert server.conn.open_streams == 0


def test_informational_responses_precede_the_final_one() -> None:
    server, stream_id = _server()
    events = server.send(
        server.headers(stream_id, [(b":status", b"100")], end_stream=False),
        server.headers(stream_id, [(b":status", b"103"), (b"link", b"</a>")], end_stream=False),
        server.headers(stream_id, [(b":status", b"204")], end_stream=True),
    )
    assert events == [
        InformationalResponseReceived(stream_id, 100, []),
        InformationalResponseReceived(stream_id, 103, [(b"link", b"</a>")]),
        ResponseReceived(stream_id, 204, [], "2", True),
        StreamEnded(stream_id),
    ]


@pytest.mark.parametrize(
    ("fields", "end_stream"),
    [
        ([(b":status", b"100")], True),
        ([(b":status", b"101")], True),
        ([(b"x-a", b"1")], True),
        ([(b":status", b"20")], True),
        ([(b":status", b"abc")], True),
        ([(b":status", b"200"), (b":status", b"200")], True),
        ([(b":status", b"200"), (b":path", b"/")], True),
        ([(b"x-a", b"1"), (b":status", b"200")], True),
        ([(b":status", b"200"), (b"connection", b"close")], True),
        ([(b":status", b"200"), (b"te", b"trailers")], True),
        ([(b":status", b"200"), (b"content-length", b"5")], True),
    ],
)
def test_malformed_responses(fields: Fields, end_stream: bool) -> None:
    server, stream_id = _server()
    server.send(server.headers(stream_id, fields, end_stream=end_stream))
    assert server.events == [StreamReset(stream_id, P, remote=False)]
    server.expect_stream_error(stream_id, P)


def test_data_before_the_response_head() -> None:
    server, stream_id = _server()
    server.send(server.data(stream_id, b"early"))
    server.expect_stream_error(stream_id, P)


def test_second_response_headers_without_end_stream() -> None:
    server, stream_id = _server()
    server.send(server.headers(stream_id, [(b":status", b"200")], end_stream=False))
    server.send(server.headers(stream_id, [(b"x-a", b"1")], end_stream=False))
    server.expect_stream_error(stream_id, P)


def test_response_content_length_mismatch() -> None:
    server, stream_id = _server()
    fields = [(b":status", b"200"), (b"content-length", b"10")]
    server.send(server.headers(stream_id, fields, end_stream=False))
    server.send(server.data(stream_id, b"short", end_stream=True))
    server.expect_stream_error(stream_id, P)


def test_head_response_content_length_is_not_a_body() -> None:
    server = RawServer().handshake()
    stream_id = server.request([(b":method", b"HEAD"), *REQUEST[1:]])
    fields = [(b":status", b"200"), (b"content-length", b"1234")]
    events = server.send(server.headers(stream_id, fields, end_stream=True))
    assert events[-1] == StreamEnded(stream_id)


def test_push_promise_to_our_client() -> None:
    server, stream_id = _server()
    block = server.encode(REQUEST)
    frame = bytes([0, 0, 4 + len(block), T.PUSH_PROMISE, 0x4]) + stream_id.to_bytes(4, "big")
    server.send(frame + (2).to_bytes(4, "big") + block)
    server.expect_connection_error(P)


def test_headers_on_a_server_initiated_stream() -> None:
    server, _ = _server()
    server.send(server.headers(2, [(b":status", b"200")]))
    server.expect_connection_error(P)
