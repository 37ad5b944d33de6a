"""gRPC-Web and Connect unary calls to the connectrpc app over HTTP/1.1, by plain HTTP (httpx)
and by connectrpc's own client (pyqwest, a Rust reqwest/hyper client), plus gRPC itself over
HTTP/1.1 (status in chunked trailers) and over h2c from that same client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from examples.grpc_echo import connect_app, stubs
from tests.grpc import expect
from tests.serving import running

pb = expect.pb
echo_connect: Any = stubs.load("echo_connect")
UNARY = "/caboose.echo.v1.Echo/Unary"
FAIL = "/caboose.echo.v1.Echo/Fail"


class Server:
    """The connectrpc app behind a wrapper that notes each request's HTTP version."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.port = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.versions.append(scope["http_version"])
        await connect_app.app(scope, receive, send)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    wrapper = Server()
    with running(wrapper) as running_server:
        wrapper.port = running_server.port
        yield wrapper


# -- plain HTTP/1.1 with httpx: the wire formats themselves ------------------------------------


def test_connect_unary_json_over_http1(server: Server) -> None:
    headers = {"content-type": "application/json", "connect-protocol-version": "1"}
    body = json.dumps({"message": "hi", "payload": "AAH/"})  # bytes are base64 in JSON
    response = httpx.post(server.base + UNARY, content=body, headers=headers)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert response.json() == {"message": "hi", "payload": "AAH/"}
    assert server.versions[-1] == "1.1"


def test_connect_error_is_an_http_status_with_a_json_body(server: Server) -> None:
    headers = {"content-type": "application/json", "connect-protocol-version": "1"}
    body = json.dumps({"code": expect.PERMISSION_DENIED, "message": expect.ERROR_MESSAGE})
    response = httpx.post(server.base + FAIL, content=body, headers=headers)
    assert response.status_code == 403  # Connect maps permission_denied to 403
    assert response.json() == {"code": "permission_denied", "message": expect.ERROR_MESSAGE}


def grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    """(flags, payload) of each length-prefixed gRPC-Web frame; flag 0x80 marks trailers."""
    frames = []
    while body:
        length = int.from_bytes(body[1:5], "big")
        frames.append((body[0], body[5 : 5 + length]))
        body = body[5 + length :]
    return frames


def grpc_web_call(server: Server, path: str, message: Any) -> tuple[list[bytes], dict[str, str]]:
    data = message.SerializeToString()
    response = httpx.post(
        server.base + path,
        content=b"\x00" + len(data).to_bytes(4, "big") + data,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert response.headers["content-type"] == "application/grpc-web+proto"
    frames = grpc_web_frames(response.content)
    messages = [payload for flags, payload in frames if not flags & 0x80]
    trailer_frames = [payload for flags, payload in frames if flags & 0x80]
    assert len(trailer_frames) == 1 and frames[-1][0] & 0x80  # trailers come last, once
    lines = trailer_frames[0].decode().strip().split("\r\n")
    trailers = {name.lower(): value.strip() for name, _, value in (s.partition(":") for s in lines)}
    return messages, trailers


def test_grpc_web_unary_over_http1(server: Server) -> None:
    messages, trailers = grpc_web_call(server, UNARY, pb.EchoRequest(message="web"))
    assert [pb.EchoResponse.FromString(m).message for m in messages] == ["web"]
    assert trailers["grpc-status"] == "0"
    assert server.versions[-1] == "1.1"


def test_grpc_web_error_status_in_the_trailer_frame(server: Server) -> None:
    request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
    messages, trailers = grpc_web_call(server, FAIL, request)
    assert messages == [] and trailers["grpc-status"] == str(expect.PERMISSION_DENIED)
    assert httpx.QueryParams("m=" + trailers["grpc-message"])["m"] == expect.ERROR_MESSAGE


# -- connectrpc's own client -------------------------------------------------------------------

CLIENT_CASES = [
    (ProtocolType.CONNECT, HTTPVersion.HTTP1, "1.1"),
    (ProtocolType.GRPC_WEB, HTTPVersion.HTTP1, "1.1"),
    # gRPC proper over HTTP/1.1: the status rides in chunked trailers, which caboose sends.
    (ProtocolType.GRPC, HTTPVersion.HTTP1, "1.1"),
    (ProtocolType.GRPC, HTTPVersion.HTTP2, "2"),  # h2c by prior knowledge, hyper's HTTP/2
]


def case_id(case: tuple[ProtocolType, HTTPVersion, str]) -> str:
    return f"{case[0].name.lower()}-http{case[2]}"


@pytest.fixture(params=CLIENT_CASES, ids=case_id)
def client(request: pytest.FixtureRequest, server: Server) -> Iterator[tuple[Any, str]]:
    protocol, version, expected = request.param
    http = SyncClient(SyncHTTPTransport(http_version=version))
    with echo_connect.EchoClientSync(server.base, protocol=protocol, http_client=http) as echo:
        yield echo, expected


def test_connectrpc_client_unary(client: tuple[Any, str], server: Server) -> None:
    echo, version = client
    reply = echo.unary(pb.EchoRequest(message="own client", payload=b"\x00\xff"))
    assert (reply.message, reply.payload) == ("own client", b"\x00\xff")
    assert server.versions[-1] == version


def test_connectrpc_client_error(client: tuple[Any, str]) -> None:
    echo, _ = client
    request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
    with pytest.raises(ConnectError) as failure:
        echo.fail(request)
    assert (failure.value.code, failure.value.message) == (
        Code.PERMISSION_DENIED,
        expect.ERROR_MESSAGE,
    )


def test_connectrpc_client_server_stream(client: tuple[Any, str]) -> None:
    echo, _ = client
    replies = list(echo.server_stream(pb.EchoRequest(message="s", count=100)))
    assert [r.index for r in replies] == list(range(100))
