"""Response and request trailers over real HTTP/1.1 sockets, seen by curl and raw clients."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from caboose.demo import app as demo_app
from tests.apps import echo, trailers_app
from tests.serving import exchange, read_all, run_tool, running, url

BODY = {"type": "http.response.body", "body": b"hello", "more_body": False}


def final_trailers(*fields: tuple[bytes, bytes], more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.trailers", "headers": list(fields), "more_trailers": more}


def test_curl_raw_shows_trailers_after_the_last_chunk() -> None:
    with running(demo_app) as server:
        result = run_tool("curl", "-s", "--raw", "-H", "TE: trailers", url(server, "/trailers"))
    out = result.stdout
    assert b"\r\n0\r\ncontent-digest: sha-256=:" in out
    assert b"server-timing: app;dur=" in out
    assert out.endswith(b"\r\n\r\n")


def test_curl_without_te_sees_no_trailers() -> None:
    with running(demo_app) as server:
        result = run_tool("curl", "-s", "--raw", url(server, "/trailers"))
    assert result.stdout.endswith(b"\r\n0\r\n\r\n")
    assert b"content-digest" not in result.stdout


def test_te_token_list_is_case_insensitive() -> None:
    app = trailers_app(BODY, final_trailers((b"x-sum", b"1")))
    with running(app) as server:
        out = exchange(
            server, b"GET / HTTP/1.1\r\nHost: x\r\nTE: gzip, Trailers\r\nConnection: close\r\n\r\n"
        )
    assert out.endswith(b"5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n")


def test_two_trailers_messages_are_both_on_the_wire() -> None:
    app = trailers_app(
        BODY, final_trailers((b"x-a", b"1"), more=True), final_trailers((b"x-b", b"2"))
    )
    with running(app) as server:
        out = exchange(
            server, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
        )
    assert out.endswith(b"0\r\nx-a: 1\r\nx-b: 2\r\n\r\n")


def test_head_gets_no_trailers_and_no_body() -> None:
    app = trailers_app(BODY, final_trailers((b"x-a", b"1")))
    with running(app) as server:
        out = exchange(
            server, b"HEAD / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
        )
    assert out.endswith(b"\r\n\r\n") and b"x-a" not in out and b"hello" not in out


def test_trailers_with_connection_close_are_written_then_the_socket_closes() -> None:
    app = trailers_app(BODY, final_trailers((b"x-a", b"1")))
    with running(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        out = read_all(sock)  # returns only because the server closed the socket
    assert out.endswith(b"0\r\nx-a: 1\r\n\r\n")


def test_body_after_trailers_raises_in_the_app() -> None:
    late = {"type": "http.response.body", "body": b"late"}
    app = trailers_app(BODY, final_trailers((b"x-a", b"1")), late)
    with running(app) as server:
        out = exchange(
            server, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
        )
    assert out.endswith(b"0\r\nx-a: 1\r\n\r\n")
    assert "after the response completed" in str(app.errors[0])


def test_body_during_trailers_phase_raises_in_the_app() -> None:
    late = {"type": "http.response.body", "body": b"late"}
    app = trailers_app(BODY, final_trailers((b"x-a", b"1"), more=True), late)
    with running(app) as server:
        exchange(
            server,
            b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n",
            timeout=2,
        )
    assert "trailers phase" in str(app.errors[0])


def test_trailers_advertised_in_scope() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope["extensions"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    with running(app) as server:
        httpx.get(url(server))
    assert "http.response.trailers" in seen and "http.request.trailers" in seen


def test_content_length_and_trailers_together() -> None:
    """Declared length is checked; with TE: trailers it goes chunked, without it stays fixed."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-length", b"5")],
        "trailers": True,
    }
    app = trailers_app(BODY, final_trailers((b"x-a", b"1")), start=start)
    with running(app) as server:
        with_te = exchange(
            server, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
        )
        without = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"content-length" not in with_te.lower() and with_te.endswith(b"0\r\nx-a: 1\r\n\r\n")
    assert b"content-length: 5" in without and without.endswith(b"\r\n\r\nhello")


def test_request_trailers_reach_the_app() -> None:
    with running(echo) as server:
        out = exchange(
            server,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
        )
    assert b"t-x-checksum: abc" in out and out.endswith(b"hello")


def test_request_trailers_are_not_a_second_request() -> None:
    with running(echo) as server:
        out = exchange(
            server,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\na\r\n0\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    # The line that looks like a request is a (malformed) trailer field, so: 400, nothing else.
    assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 400 ")


def test_demo_echo_returns_request_trailers_of_a_streamed_body() -> None:
    """The body comes in two pieces, so /echo streams its answer: the request trailers come
    back as response trailers (they used to be dropped)."""
    head = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: x-sum\r\nConnection: close\r\n\r\n"
    )
    with (
        running(demo_app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(head + b"3\r\nhel\r\n")
        time.sleep(0.2)  # the app has the first piece and starts its answer
        sock.sendall(b"2\r\nlo\r\n0\r\nx-sum: 5\r\n\r\n")
        out = read_all(sock)
    assert b"\r\n0\r\necho-trailer-x-sum: 5\r\n\r\n" in out, out
    assert b"hel" in out and b"lo" in out
