"""gRPC on the wire, frame by frame, read by the ``h2`` library: trailers as a final HEADERS
frame, Trailers-Only as a single HEADERS frame with END_STREAM, and the hand-written app's
answers to malformed calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest

from examples.grpc_echo import asgi_app
from tests.grpc import expect
from tests.grpc.conftest import APPS, Servers
from tests.h2client import H2Client, H2Stream

pb = expect.pb
GRPC_HEAD = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


@pytest.fixture(params=sorted(APPS))
def port(request: pytest.FixtureRequest, servers: Servers) -> int:
    return servers.get(request.param, "h2c").port


@pytest.fixture
def client(port: int) -> Iterator[H2Client]:
    with H2Client(port) as h2:
        yield h2


@pytest.fixture
def raw(servers: Servers) -> Iterator[H2Client]:
    with H2Client(servers.get("asgi", "h2c").port) as h2:
        yield h2


def call(client: H2Client, method: str, body: bytes, *headers: tuple[bytes, bytes]) -> H2Stream:
    path = f"/caboose.echo.v1.Echo/{method}".encode()
    return client.get(path, method=b"POST", headers=[*GRPC_HEAD, *headers], body=body)


def message(request: Any) -> bytes:
    return asgi_app.frame(request.SerializeToString())


def field(fields: list[tuple[bytes, bytes]] | None, name: bytes) -> bytes | None:
    return dict(fields or []).get(name)


def test_status_arrives_in_a_trailing_headers_frame(client: H2Client) -> None:
    stream = call(client, "Unary", message(pb.EchoRequest(message="wire")))
    content_type = field(stream.headers, b"content-type") or b""
    assert stream.status == 200 and content_type.startswith(b"application/grpc")
    assert stream.kinds[0] == "ResponseReceived" and stream.kinds[-2:] == [
        "TrailersReceived",
        "StreamEnded",
    ]
    reply = pb.EchoResponse.FromString(bytes(stream.data[5:]))
    assert reply.message == "wire" and field(stream.trailers, b"grpc-status") == b"0"


def test_an_error_before_any_message_is_trailers_only(raw: H2Client) -> None:
    """The hand-written app answers a failed call with Trailers-Only."""
    request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
    stream = call(raw, "Fail", message(request))
    # One HEADERS frame carrying END_STREAM: h2 reports it as a response that ends at once.
    assert stream.kinds == ["ResponseReceived", "StreamEnded"] and stream.data_frames == 0
    assert field(stream.headers, b"grpc-status") == b"7"
    encoded = field(stream.headers, b"grpc-message")
    assert encoded is not None and encoded.isascii() and b" " in encoded
    assert unquote(encoded.decode()) == expect.ERROR_MESSAGE


def test_connectrpc_answers_a_handler_error_with_empty_messages_and_trailers(
    servers: Servers,
) -> None:
    """connectrpc sends a handler's error as a head, no DATA, then the status in trailers
    (a valid form, not Trailers-Only); its Trailers-Only is for calls refused before the
    handler, such as a grpc-timeout with a bad unit."""
    with H2Client(servers.get("connect", "h2c").port) as h2:
        failed = call(h2, "Fail", message(pb.FailRequest(code=expect.PERMISSION_DENIED)))
        refused = call(h2, "Unary", message(pb.EchoRequest()), (b"grpc-timeout", b"1x"))
    assert failed.kinds == ["ResponseReceived", "TrailersReceived", "StreamEnded"]
    assert failed.data_frames == 0 and field(failed.trailers, b"grpc-status") == b"7"
    assert refused.kinds == ["ResponseReceived", "StreamEnded"]
    assert field(refused.headers, b"grpc-status") == b"3"  # INVALID_ARGUMENT


def test_grpc_timeout_is_honoured(client: H2Client) -> None:
    request = pb.SlowRequest(seconds=10, call_id=expect.call_id())
    stream = call(client, "Slow", message(request), (b"grpc-timeout", b"200m"))
    status = field(stream.trailers, b"grpc-status") or field(stream.headers, b"grpc-status")
    assert status == b"4"  # DEADLINE_EXCEEDED, answered by the server at its deadline


def test_a_reset_stream_cancels_the_handler_at_once(client: H2Client) -> None:
    call_id = expect.call_id()
    path = b"/caboose.echo.v1.Echo/Slow"
    stream_id = client.request(
        b"POST", path, headers=GRPC_HEAD, body=message(pb.SlowRequest(seconds=10, call_id=call_id))
    )
    expect.wait_until_running(call_id)
    client.reset(stream_id)
    expect.assert_cancelled_promptly(call_id, time.monotonic())


# -- the hand-written app's answers to malformed calls -----------------------------------------


def status(stream: H2Stream) -> tuple[bytes | None, str]:
    """(grpc-status, decoded grpc-message) of a Trailers-Only answer."""
    encoded = field(stream.headers, b"grpc-message") or b""
    return field(stream.headers, b"grpc-status"), unquote(encoded.decode())


def test_malformed_grpc_timeout_is_internal(raw: H2Client) -> None:
    stream = call(raw, "Unary", message(pb.EchoRequest()), (b"grpc-timeout", b"1 hour"))
    assert status(stream)[0] == b"13"


def test_compressed_message_is_unimplemented(raw: H2Client) -> None:
    stream = call(raw, "Unary", b"\x01" + message(pb.EchoRequest())[1:])
    assert status(stream)[0] == b"12"


def test_body_ending_inside_a_message_is_internal(raw: H2Client) -> None:
    stream = call(raw, "Unary", message(pb.EchoRequest(message="cut"))[:-1])
    code, text = status(stream)
    assert code == b"13" and "inside a message" in text


def test_two_messages_to_a_unary_method_is_internal(raw: H2Client) -> None:
    stream = call(raw, "Unary", message(pb.EchoRequest()) * 2)
    assert status(stream)[0] == b"13"


def test_a_message_above_the_limit_is_resource_exhausted(raw: H2Client) -> None:
    head = b"\x00" + (asgi_app.MAX_MESSAGE + 1).to_bytes(4, "big")
    stream = call(raw, "Unary", head)
    assert status(stream)[0] == b"8"


def test_a_request_that_is_not_grpc_gets_415(raw: H2Client) -> None:
    stream = raw.get(b"/caboose.echo.v1.Echo/Unary")
    assert stream.status == 415


def test_percent_encoding_of_grpc_message() -> None:
    assert asgi_app.percent_encode("a 100% b") == b"a 100%25 b"
    assert asgi_app.percent_encode("é") == b"%C3%A9"
    assert asgi_app.percent_encode("\n") == b"%0A"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1S", 1.0), (b"250m", 0.25), (b"3M", 180.0), (b"1H", 3600.0), (b"10u", 1e-5)],
)
def test_grpc_timeout_units(value: bytes, seconds: float) -> None:
    assert asgi_app.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"1", b"S", b"123456789S", b"1s", b"-1S"])
def test_malformed_grpc_timeouts(value: bytes) -> None:
    with pytest.raises(asgi_app.GrpcError):
        asgi_app.parse_timeout(value)
