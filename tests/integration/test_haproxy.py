"""Behind HAProxy, with the configuration docs/deployment.md prints (tests/haproxy.py puts the
test's ports and certificate in): TLS with ALPN h2 and http/1.1 at the frontend, HTTP/1.1 and
WebSocket to caboose through ``backend caboose``, gRPC to caboose over h2c (``proto h2``)
through ``backend caboose_h2``, and the X-Forwarded-* fields caboose believes from it.

The clients connect from 127.0.0.2, so the address HAProxy's ``option forwardfor`` adds is not
a trusted proxy (caboose trusts 127.0.0.1 and ::1) and must be the client caboose reports.
"""

from __future__ import annotations

import asyncio
import json
import queue
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import websockets

from caboose import demo
from examples.grpc_echo import asgi_app, stubs
from tests.apps import scope_json
from tests.grpc import expect
from tests.haproxy import documented_proxy
from tests.serving import run_tool, running
from tests.tls import TestCertificate, issue_certificate

CLIENT = "127.0.0.2"  # loopback, but not a trusted proxy
pb = expect.pb
pb_grpc: Any = stubs.load("echo_pb2_grpc")
grpc_versions: list[str] = []  # the HTTP version of each gRPC call as caboose served it


async def app(scope: Any, receive: Any, send: Any) -> None:
    """gRPC to the Echo service, WebSocket to an echo that first says its scope, /trailers to
    the demo's trailers, the rest to the scope as JSON."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        seen = {key: scope[key] for key in ("scheme", "client", "http_version")}
        await send({"type": "websocket.send", "text": json.dumps(seen)})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text")})
        return
    if scope["type"] == "http" and scope["path"].startswith(asgi_app.SERVICE):
        grpc_versions.append(scope["http_version"])
        await asgi_app.app(scope, receive, send)
        return
    if scope["path"] == "/trailers":  # a body, then a content-digest trailer
        await demo.app(scope, receive, send)
        return
    await scope_json(scope, receive, send)


class Proxied:
    def __init__(self, port: int, certificate: TestCertificate, errors: Path) -> None:
        self.port, self.certificate, self.errors = port, certificate, errors


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    folder = tmp_path_factory.mktemp("haproxy")
    certificate = issue_certificate(folder)
    with (
        running(app) as server,
        documented_proxy(folder, server.port, certificate) as (port, errors),
    ):
        yield Proxied(port, certificate, errors)


def curl(proxied: Proxied, version: str, *args: str) -> tuple[str, bytes, bytes]:
    """curl from 127.0.0.2 to HAProxy over TLS: the HTTP version it spoke, body, verbose log."""
    result = run_tool(
        "curl", "-sS", "-v", version, "--interface", CLIENT, "--cacert",
        str(proxied.certificate.ca), "-w", "\n%{http_version}", *args,
    )  # fmt: skip
    assert result.returncode == 0, (result.stderr, proxied.errors.read_text())
    body, _, spoken = result.stdout.rpartition(b"\n")
    return spoken.decode(), body, result.stderr


def host(scope: dict[str, Any]) -> str:
    return next(value for name, value in scope["headers"] if name == "host")


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_http_reaches_caboose_over_http11_with_the_forwarded_fields(
    haproxy: Proxied, version: str
) -> None:
    forged = ("-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Proto: http")
    spoken, body, _ = curl(
        haproxy, version, "-H", "Host: app.example", *forged,
        f"https://127.0.0.1:{haproxy.port}/page?q=1",
    )  # fmt: skip
    assert spoken == ("2" if version == "--http2" else "1.1")  # the frontend's ALPN
    scope = json.loads(body)
    assert scope["http_version"] == "1.1"  # backend caboose: HTTP/1.1
    assert scope["client"] == [CLIENT, 0]  # option forwardfor; the forged entry not believed
    assert scope["scheme"] == "https"  # set-header X-Forwarded-Proto replaced the client's
    assert host(scope) == "app.example"  # Host (HTTP/2: :authority) passed on as it came
    assert (scope["path"], scope["query_string"]) == ("/page", "q=1")


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_trailers_come_back_through_the_http11_backend(haproxy: Proxied, version: str) -> None:
    """HAProxy reads caboose's chunked trailer section and passes it on (HTTP/2: a trailing
    HEADERS frame), unlike nginx's proxy_pass."""
    url = f"https://127.0.0.1:{haproxy.port}/trailers"
    spoken, body, verbose = curl(haproxy, version, "--raw", "-H", "TE: trailers", url)
    assert spoken == ("2" if version == "--http2" else "1.1")
    if version == "--http1.1":
        assert b"\r\n0\r\ncontent-digest: sha-256=:" in body, body  # the chunked trailer
    else:
        fields = [line[2:] for line in verbose.decode().splitlines() if line.startswith("< ")]
        after_body = fields[fields.index("") :]  # curl -v prints the trailers after the head
        assert any(f.startswith("content-digest: sha-256=:") for f in after_body), verbose


@pytest.fixture(scope="module")
def stub(haproxy: Proxied) -> Iterator[Any]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=haproxy.certificate.ca.read_bytes()
    )
    options = [("grpc.max_receive_message_length", expect.MAX_MESSAGE)]
    with grpc.secure_channel(f"127.0.0.1:{haproxy.port}", credentials, options=options) as chan:
        yield pb_grpc.EchoStub(chan)


def test_grpc_goes_to_caboose_over_h2c_with_trailers(stub: Any) -> None:
    grpc_versions.clear()
    reply = stub.Unary(pb.EchoRequest(message="hello", payload=b"\x00\xff"), timeout=10)
    assert (reply.message, reply.payload) == ("hello", b"\x00\xff")
    replies = list(stub.ServerStream(pb.EchoRequest(message="m", count=100), timeout=10))
    assert [r.index for r in replies] == list(range(100))
    requests = (pb.EchoRequest(message=str(i % 10), payload=b"ab") for i in range(100))
    assert stub.ClientStream(requests, timeout=10).index == 200
    payload = expect.big_payload()  # 4 MiB each way, through HAProxy's buffers
    assert stub.Unary(pb.EchoRequest(payload=payload), timeout=30).payload == payload
    assert grpc_versions == ["2"] * 4  # backend caboose_h2: proto h2


def test_grpc_bidi_round_trips_through_haproxy(stub: Any) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    replies = stub.Bidi(iter(outbox.get, None), timeout=20)
    for i in range(20):
        outbox.put(pb.EchoRequest(message=f"ping {i}"))
        reply = next(replies)
        assert (reply.message, reply.index) == (f"ping {i}", i)
    outbox.put(None)
    assert list(replies) == []


def test_grpc_status_and_trailing_metadata_come_back(stub: Any) -> None:
    request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Fail(request, timeout=10)
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED  # grpc-status
    assert failure.value.details() == expect.ERROR_MESSAGE  # grpc-message, percent-encoded
    _, call = stub.Unary.with_call(
        pb.EchoRequest(message="m"), metadata=expect.METADATA, timeout=10
    )
    assert expect.echoed(call.initial_metadata()) == list(expect.METADATA)
    assert expect.echoed(call.trailing_metadata()) == list(expect.METADATA)


def test_websocket_goes_through_the_http11_backend(haproxy: Proxied) -> None:
    context = ssl.create_default_context(cafile=str(haproxy.certificate.ca))

    async def client() -> tuple[dict[str, Any], list[str]]:
        uri = f"wss://127.0.0.1:{haproxy.port}/ws"
        async with websockets.connect(uri, ssl=context, local_addr=(CLIENT, 0)) as ws:
            seen = json.loads(await ws.recv())
            echoed = []
            for text in ("one", "two", "x" * 100_000):
                await ws.send(text)
                echoed.append(str(await ws.recv()))
        return seen, echoed

    seen, echoed = asyncio.run(asyncio.wait_for(client(), 10))
    assert seen == {"scheme": "wss", "client": [CLIENT, 0], "http_version": "1.1"}
    assert echoed == ["one", "two", "x" * 100_000]
