"""Our client against our server: trailers both ways over HTTP/1.1, h2c and h2 over TLS, and
gRPC calls built by hand (a unary and a bidirectional one) against the example's ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from caboose.client import Client, CloseReason
from examples.grpc_echo import asgi_app, service
from tests.client.h2server import run
from tests.serving import running
from tests.tls import issue_certificate

pb = service.pb
GRPC = {"content-type": "application/grpc"}


async def echo_with_trailers(scope: Any, receive: Any, send: Any) -> None:
    """The body back, and the request's trailers back as the response's, plus a count."""
    body, trailers = b"", []
    while True:
        message = await receive()
        body += message.get("body", b"")
        trailers = message.get("trailers", trailers)
        if not message.get("more_body"):
            break
    start = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
    await send(start)
    await send({"type": "http.response.body", "body": body})
    trailers = [*trailers, (b"x-length", b"%d" % len(body))]
    await send({"type": "http.response.trailers", "headers": trailers})


@pytest.fixture(params=["h1", "h2c", "h2"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "h2":
        cert = issue_certificate(tmp_path)
        with running(echo_with_trailers, **cert.server_options()) as server:
            yield f"https://127.0.0.1:{server.port}", {"verify": str(cert.ca)}, "HTTP/2"
        return
    with running(echo_with_trailers) as server:
        options = {"http2_prior_knowledge": request.param == "h2c"}
        version = "HTTP/2" if request.param == "h2c" else "HTTP/1.1"
        yield f"http://127.0.0.1:{server.port}", options, version


def test_trailers_both_ways(target: Any) -> None:
    base, options, version = target

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"a" * 70_000, b"b" * 70_000, b"c"):
            yield piece

    async def scenario() -> None:
        async with Client(timeout=5, **options) as client:
            response = await client.request(
                "POST", base + "/", content=pieces(), trailers={"x-digest": "sha-256=abc"}
            )
        assert response.http_version == version
        assert response.content == b"a" * 70_000 + b"b" * 70_000 + b"c"
        assert response.trailers["x-digest"] == "sha-256=abc"
        assert response.trailers["x-length"] == "140001"
        assert response.close_reason is CloseReason.ENDED

    run(scenario())


def grpc_frame(message: Any) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def grpc_messages(buffer: bytearray) -> list[bytes]:
    """Whole messages taken off the front of ``buffer``."""
    out = []
    while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
        size = int.from_bytes(buffer[1:5], "big")
        out.append(bytes(buffer[5 : 5 + size]))
        del buffer[: 5 + size]
    return out


@pytest.fixture(scope="module")
def grpc_base() -> Any:
    with running(asgi_app.app) as server:
        yield f"http://127.0.0.1:{server.port}/caboose.echo.v1.Echo/"


def test_grpc_unary_by_hand(grpc_base: str) -> None:
    async def scenario() -> None:
        async with Client(http2_prior_knowledge=True, timeout=5) as client:
            request = pb.EchoRequest(message="hello", payload=b"\x01\x02")
            response = await client.request(
                "POST", grpc_base + "Unary", headers=GRPC, content=grpc_frame(request)
            )
        assert response.status == 200
        assert response.headers["content-type"].startswith("application/grpc")
        [reply] = grpc_messages(bytearray(response.content))
        echoed = pb.EchoResponse.FromString(reply)
        assert echoed.message == "hello" and echoed.payload == b"\x01\x02"
        assert response.trailers["grpc-status"] == "0"

    run(scenario())


def test_grpc_status_of_a_failure_is_in_the_trailers(grpc_base: str) -> None:
    async def scenario() -> None:
        async with Client(http2_prior_knowledge=True, timeout=5) as client:
            request = pb.FailRequest(code=7, message="no entry")
            response = await client.request(
                "POST", grpc_base + "Fail", headers=GRPC, content=grpc_frame(request)
            )
        # Trailers-Only: the status rides the only HEADERS frame
        status = response.trailers.get("grpc-status") or response.headers.get("grpc-status")
        assert status == "7"

    run(scenario())


def test_grpc_bidi_by_hand_streams_both_ways(grpc_base: str) -> None:
    """Each reply is read before the next request is sent: only a client that streams both
    directions at once over one HTTP/2 stream can do this. The first message is queued before
    the call starts, since stream() waits for the response head and a gRPC server sends
    that with its first reply."""
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    outbox.put_nowait(grpc_frame(pb.EchoRequest(message="m0")))

    async def requests() -> AsyncIterator[bytes]:
        while (item := await outbox.get()) is not None:
            yield item

    async def scenario() -> None:
        async with (
            Client(http2_prior_knowledge=True, timeout=5) as client,
            client.stream("POST", grpc_base + "Bidi", headers=GRPC, content=requests()) as call,
        ):
            buffer = bytearray()
            replies: list[str] = []
            body = aiter(call)
            for index in range(5):
                while not (messages := grpc_messages(buffer)):
                    buffer += await anext(body)
                replies += [pb.EchoResponse.FromString(m).message for m in messages]
                if index < 4:
                    await outbox.put(grpc_frame(pb.EchoRequest(message=f"m{index + 1}")))
            await outbox.put(None)
            rest = b"".join([chunk async for chunk in body])
            assert grpc_messages(bytearray(rest)) == []
            assert replies == [f"m{index}" for index in range(5)]
            assert call.trailers["grpc-status"] == "0"

    run(scenario())


def test_leaving_a_stream_early_reaches_the_app_as_a_disconnect() -> None:
    events: list[str] = []

    async def endless(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        events.append(message["type"])

    async def scenario(base: str, **options: Any) -> None:
        async with Client(timeout=5, **options) as client:
            async with client.stream("GET", base) as response:
                assert await anext(aiter(response)) == b"first"
            assert response.close_reason is CloseReason.CANCELLED
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.02)

    with running(endless) as server:
        base = f"http://127.0.0.1:{server.port}/"
        run(scenario(base))
        run(scenario(base, http2_prior_knowledge=True))
    assert events == ["http.disconnect", "http.disconnect"]
