"""HTTP/1.1 behaviour over real sockets, driven by curl, httpx and raw clients."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.apps import echo, hello, scope_json, slow
from tests.serving import exchange, read_all, read_response, run_tool, running, url


def test_httpx_get_keep_alive_and_default_headers() -> None:
    with running(hello) as server, httpx.Client() as client:
        first = client.get(url(server))
        second = client.get(url(server))
    assert first.text == second.text == "Hello, world!"
    assert first.headers["server"] == "caboose" and "GMT" in first.headers["date"]
    assert first.headers["content-length"] == "13"


def test_pipelined_responses_come_in_request_order() -> None:
    with running(slow) as server:
        out = exchange(
            server,
            b"GET /?0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /?0 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /?0.1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.rstrip(b"!").count(b"Hello, world") == 3


def test_chunked_request_body_with_httpx_streaming_upload() -> None:
    def chunks() -> Any:
        yield b"abc"
        yield b"def"

    with running(echo) as server:
        response = httpx.post(url(server), content=chunks())
    assert response.content == b"abcdef"


def test_large_body_round_trip_with_backpressure() -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB: well past the read high-water mark
    with running(echo) as server:
        response = httpx.post(url(server), content=payload, timeout=30)
    assert response.content == payload


def test_expect_100_continue_with_curl() -> None:
    with running(echo) as server:
        result = run_tool(
            "curl", "-sv", "-H", "Expect: 100-continue", "--data-binary", "x" * 2000, url(server)
        )
    assert b"HTTP/1.1 100 Continue" in result.stderr
    assert result.stdout == b"x" * 2000


def test_http10_request_gets_a_close_delimited_or_sized_response() -> None:
    with running(hello) as server:
        out = exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"Hello, world!")


def test_head_with_curl() -> None:
    with running(hello) as server:
        result = run_tool("curl", "-sI", url(server))
    assert result.stdout.startswith(b"HTTP/1.1 200 OK")


def test_idle_keep_alive_connection_is_closed() -> None:
    with (
        running(hello, timeout_keep_alive=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).endswith(b"Hello, world!")
        started = time.monotonic()
        assert sock.recv(10) == b""  # closed by the server
        assert time.monotonic() - started < 3


def test_slowloris_head_gets_408() -> None:
    with (
        running(hello, header_read_timeout=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out = read_all(sock)
    assert out.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 501),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(101))
            + b"\r\n",
            431,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_request_gets_status_and_server_keeps_serving(
    request_bytes: bytes, status: int
) -> None:
    with running(echo) as server:
        out = exchange(server, request_bytes)
        assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
        assert httpx.post(url(server), content=b"still fine").content == b"still fine"


def test_response_header_with_crlf_raises_in_the_app_and_is_never_written() -> None:
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # The head is held until the first body, so that is the send that raises.
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"x", b"1\r\ny: 2")]}
            )
            await send({"type": "http.response.body", "body": b"never"})
        except RuntimeError as exc:
            errors.append(exc)
            raise

    with running(app) as server:
        out = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert errors and out.startswith(b"HTTP/1.1 500 ") and b"y: 2" not in out


def test_app_exception_after_start_closes_the_connection(caplog: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")

    with running(app) as server:
        out = exchange(
            server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )  # returns because the server closed
    assert b"partial" in out and not out.endswith(b"0\r\n\r\n")
    assert sum("Exception in ASGI application" in r.message for r in caplog.records) == 1


def test_disconnect_reaches_a_streaming_app() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        seen.append(message["type"])

    with running(app) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"tick" in sock.recv(1000)
        # The client has gone; the server still runs, so only the disconnect can tell the app.
        # (The wait used to sit inside the socket's block: it ran its whole 5 s, and the
        # disconnect came from the close after it.)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == ["http.disconnect"]


def test_scope_is_complete() -> None:
    with running(scope_json, root_path="/mnt") as server:
        body = httpx.get(url(server, "/a%20b/c?x=1&y=%20"), headers={"X-Up": "V"}).json()
        port = server.port
    assert body["type"] == "http" and body["http_version"] == "1.1"
    assert body["method"] == "GET" and body["scheme"] == "http"
    assert body["path"] == "/mnt/a b/c" and body["raw_path"] == "/mnt/a%20b/c"
    assert body["root_path"] == "/mnt" and body["query_string"] == "x=1&y=%20"
    assert ["x-up", "V"] in body["headers"]
    assert body["server"] == ["127.0.0.1", port] and body["client"][0] == "127.0.0.1"


def test_proxy_headers_from_trusted_peer() -> None:
    with running(scope_json) as server:
        headers = {"X-Forwarded-For": "1.2.3.4, 127.0.0.1", "X-Forwarded-Proto": "https"}
        body = httpx.get(url(server), headers=headers).json()
        assert body["client"][0] == "1.2.3.4" and body["scheme"] == "https"
    with running(scope_json, forwarded_allow_ips="10.0.0.1") as server:
        body = httpx.get(url(server), headers=headers).json()
        assert body["client"][0] == "127.0.0.1" and body["scheme"] == "http"


def test_limit_concurrency_answers_503() -> None:
    with (
        running(slow, limit_concurrency=1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as busy,
    ):
        busy.sendall(b"GET /?1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        out = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 ")


def test_app_returning_without_response_is_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with running(app) as server:
        assert httpx.get(url(server)).status_code == 500


def test_state_from_lifespan_reaches_requests() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "ready"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = json.dumps(scope["state"]).encode()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": body})

    with running(app, lifespan="on") as server:
        assert httpx.get(url(server)).json() == {"db": "ready"}


def test_graceful_shutdown_lets_in_flight_requests_finish() -> None:
    with running(slow) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /?0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        server.request_exit()  # while the app is still sleeping
        out = read_all(sock)
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"Hello, world!")
    assert b"connection: close" in out


def test_app_ignoring_a_lost_client_is_cancelled_after_the_grace() -> None:
    import asyncio

    cancelled: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        started = time.monotonic()
        try:
            await asyncio.sleep(30)  # never looks at receive()
        except asyncio.CancelledError:
            cancelled.append(time.monotonic() - started)
            raise

    with running(app, cancel_grace=0.2) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"tick" in sock.recv(1000)
        deadline = time.monotonic() + 5
        while not cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
    assert cancelled and cancelled[0] < 3


def test_work_after_the_response_survives_the_client_leaving() -> None:
    """Like Starlette's background tasks: the response is complete, the client's departure
    must not cancel what the app does next."""
    import asyncio

    finished = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(0.5)
        finished.append(True)

    with running(app, cancel_grace=0.1) as server:
        out = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.endswith(b"done")
        deadline = time.monotonic() + 3
        while not finished and time.monotonic() < deadline:
            time.sleep(0.02)
    assert finished == [True]


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: not a host\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_request_without_one_valid_host_gets_400_from_the_server(head: bytes) -> None:
    """RFC 9112 §3.2 and §6.1 over a real socket: 400 and close, the app never called."""
    called: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)
        await hello(scope, receive, send)

    with running(app) as server:
        out = exchange(server, head)
    assert out.startswith(b"HTTP/1.1 400 ") and called == []


def test_bytes_that_are_not_http_get_the_connection_closed_without_an_answer() -> None:
    """On the cleartext port, an HTTP/2 client's broken preface is no HTTP/1.x request: no
    400 (which it would read as a frame header of megabytes), just the end of the
    connection; the server goes on serving."""
    with running(hello) as server:
        assert exchange(server, b"INVALID CONNECTION PREFACE\r\n\r\n") == b""
        assert exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def test_connection_close_with_pipelined_bytes_behind_it_is_not_reset() -> None:
    """A `Connection: close` request with a megabyte of pipelined requests behind it: the
    server answers the first and closes with input unread. A plain close made Linux send a
    TCP RST that destroyed the response (10 times in 10); the lingering close lets it arrive."""
    first = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    behind = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 40_000
    with running(hello) as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                with contextlib.suppress(OSError):  # the server may stop reading first
                    sock.sendall(first + behind)
                received = bytearray()
                while chunk := sock.recv(65536):  # ConnectionResetError fails the test
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200 ") and received.count(b"HTTP/1.1") == 1
