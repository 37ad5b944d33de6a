"""The same behaviour, asserted over HTTP/1.1 and HTTP/2: one ASGI bridge, two protocols.

Each test runs twice (the ``client`` fixture): over HTTP/1.1 with a raw-socket client, and
over h2c with the python-hyper ``h2`` library (tests/h2client.py). Where the protocols differ
only in how they say something (an aborted response is a connection closed before the last
chunk in HTTP/1.1, a RST_STREAM INTERNAL_ERROR in HTTP/2), the client adapters translate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import h2.errors
import pytest

from caboose.errors import ClientDisconnected
from tests.apps import echo, hello, trailers_app
from tests.h2client import H2Client
from tests.serving import read_all, running

Fields = list[tuple[bytes, bytes]]
TIMEOUT = 5.0


# -- what a client sees, whatever the protocol -------------------------------------------------


@dataclass
class Reply:
    status: int | None
    headers: Fields = field(default_factory=list)  # names lower-cased, no pseudo-headers
    body: bytes = b""
    trailers: Fields = field(default_factory=list)
    complete: bool = False  # the message ended the way the protocol ends a message
    aborted: bool = False  # H1: closed before the last chunk; H2: RST_STREAM INTERNAL_ERROR

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    def names(self) -> set[bytes]:
        return {name for name, _ in self.headers}


class Client(Protocol):
    name: str

    def fetch(
        self,
        port: int,
        method: bytes,
        path: bytes,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        trailers: Fields | None = None,
    ) -> Reply: ...

    def leave_mid_response(self, port: int, path: bytes) -> None:
        """Start a request, read some of the streamed response, then go away."""


# -- HTTP/1.1: raw sockets ---------------------------------------------------------------------


def _fields(lines: Iterable[bytes]) -> Fields:
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append((name.strip().lower(), value.strip()))
    return out


def _dechunk(data: bytes) -> tuple[bytes, Fields, bool]:
    """(body, trailers, complete) of a chunked body; incomplete if it stops early."""
    body, pos = b"", 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return body, [], False
        size = int(data[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            break
        body += data[pos : pos + size]
        if len(data) < pos + size + 2:
            return body, [], False
        pos += size + 2
    lines: list[bytes] = []
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return body, _fields(lines), False
        line, pos = data[pos:end], end + 2
        if not line:
            return body, _fields(lines), pos == len(data)
        lines.append(line)


def parse_h1(raw: bytes, method: bytes) -> Reply:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return Reply(status=None)
    status_line, *lines = head.split(b"\r\n")
    reply = Reply(status=int(status_line.split()[1]), headers=_fields(lines))
    if method == b"HEAD" or reply.status in (204, 304):
        reply.body, reply.complete = rest, True  # no framing: any byte here is a bug
    elif reply.header(b"transfer-encoding") == b"chunked":
        reply.body, reply.trailers, reply.complete = _dechunk(rest)
        reply.aborted = not reply.complete
    elif (length := reply.header(b"content-length")) is not None:
        reply.body, reply.complete = rest, len(rest) == int(length)
        reply.aborted = not reply.complete
    else:
        reply.body, reply.complete = rest, True  # delimited by the close
    return reply


def h1_request(
    port: int, method: bytes, path: bytes, headers: Fields, body: bytes | None, trailers: Any
) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, path), b"host: 127.0.0.1:%d" % port]
    lines += [name + b": " + value for name, value in headers]
    payload = b""
    if trailers is not None:
        lines.append(b"transfer-encoding: chunked")
        if body:
            payload = b"%x\r\n%s\r\n" % (len(body), body)
        payload += b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
    elif body is not None:
        lines.append(b"content-length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class OverH1:
    name = "h1"

    def fetch(
        self,
        port: int,
        method: bytes,
        path: bytes,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        trailers: Fields | None = None,
    ) -> Reply:
        request = h1_request(
            port, method, path, [*headers, (b"connection", b"close")], body, trailers
        )
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(request)
            return parse_h1(read_all(sock), method)

    def leave_mid_response(self, port: int, path: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(h1_request(port, b"GET", path, [], None, None))
            data = b""
            while b"\r\n\r\n" not in data or data.endswith(b"\r\n\r\n"):
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection before streaming"
                data += chunk
        # The socket is closed here, while the app is still streaming.


# -- HTTP/2: the h2 library --------------------------------------------------------------------


class OverH2:
    name = "h2"

    def fetch(
        self,
        port: int,
        method: bytes,
        path: bytes,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        trailers: Fields | None = None,
    ) -> Reply:
        with H2Client(port, timeout=TIMEOUT) as client:
            sid = client.request(method, path, headers=headers, body=body, trailers=trailers)
            stream = client.response(sid)
        return Reply(
            status=stream.status,
            headers=stream.headers,
            body=bytes(stream.data),
            trailers=stream.trailers or [],
            complete=stream.ended,
            aborted=stream.reset == h2.errors.ErrorCodes.INTERNAL_ERROR,
        )

    def leave_mid_response(self, port: int, path: bytes) -> None:
        with H2Client(port, timeout=TIMEOUT) as client:
            sid = client.request(b"GET", path)
            stream = client.streams[sid]
            client.wait_for(lambda: len(stream.data) > 0, what="the first body bytes")
            client.reset(sid, h2.errors.ErrorCodes.CANCEL)
            # The connection lives on and still serves: only the stream went away.
            other = client.get(b"/hello")
            assert other.status == 200 and bytes(other.data) == b"Hello, world!"


@pytest.fixture(params=["h1", "h2"])
def client(request: pytest.FixtureRequest) -> Client:
    return OverH1() if request.param == "h1" else OverH2()


# -- the application under contract ------------------------------------------------------------

BODY = {"type": "http.response.body", "body": b"hello", "more_body": False}
TRAILERS = {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]}
LATE = {"type": "http.response.body", "body": b"late"}


class Recorder:
    """The app's side of the story: errors it saw, and how a streamed response ended."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.disconnected = False
        self.refused_sends = 0
        self.stream_done = threading.Event()


def contract_app(record: Recorder) -> Any:
    with_trailers = trailers_app(BODY, TRAILERS)
    body_after_trailers = trailers_app(BODY, TRAILERS, LATE)
    record.errors = body_after_trailers.errors

    async def fail_before(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom before the response")

    async def fail_after(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0.05)  # the start and the partial body are on the wire
        raise ValueError("boom after the response began")

    async def bad_header(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"x-bad", b"a\r\nx-injected: 1")]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"never"})
        except RuntimeError as exc:
            record.errors.append(exc)
            raise

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            record.disconnected = True
            gone.set()

        watcher = asyncio.ensure_future(watch())
        chunk = {"type": "http.response.body", "body": b"tick\n", "more_body": True}
        try:
            await send({"type": "http.response.start", "status": 200})
            for _ in range(250):  # at most 5 s
                try:
                    await send(chunk)
                except ClientDisconnected:
                    break  # how a streaming loop learns the client left (ASGI 2.4)
                if gone.is_set():
                    break
                await asyncio.sleep(0.02)
            await asyncio.wait_for(gone.wait(), 1)
            for message in (chunk, chunk, {"type": "http.response.body"}):
                with contextlib.suppress(ClientDisconnected):  # ASGI 2.4: the peer is gone
                    await send(message)
                    continue
                record.refused_sends += 1
        except Exception as exc:
            record.errors.append(exc)
        finally:
            watcher.cancel()
            record.stream_done.set()

    async def header_shapes(scope: Any, receive: Any, send: Any) -> None:
        # ASGI's headers are any iterable of [name, value] pairs: lists of lists, a tuple of
        # tuples, a generator. The compiled build checks declared types at run time, so
        # this is where a too-narrow annotation in a bridge or a core would show.
        whole = scope["query_string"] == b"whole"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": ([b"x-list", b"1"], (b"x-tuple", b"2")),
                "trailers": not whole,
            }
        )
        if whole:
            await send({"type": "http.response.body", "body": b"whole"})
            return
        await send({"type": "http.response.body", "body": b"str", "more_body": True})
        await send({"type": "http.response.body", "body": b"eamed"})
        pairs = ([name, value] for name, value in [(b"x-gen", b"3")])
        await send({"type": "http.response.trailers", "headers": pairs})

    routes = {
        "/hello": hello,
        "/header-shapes": header_shapes,
        "/echo": echo,
        "/trailers": with_trailers,
        "/fail-before": fail_before,
        "/fail-after": fail_after,
        "/body-after-trailers": body_after_trailers,
        "/bad-header": bad_header,
        "/stream": stream,
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await routes[scope["path"]](scope, receive, send)

    return app


@pytest.fixture
def record() -> Recorder:
    return Recorder()


@pytest.fixture
def port(record: Recorder) -> Any:
    with running(contract_app(record)) as server:
        yield server.port


TE = [(b"te", b"trailers")]


# -- the contract ------------------------------------------------------------------------------


def test_get_body(client: Client, port: int) -> None:
    reply = client.fetch(port, b"GET", b"/hello")
    assert reply.status == 200 and reply.complete and not reply.aborted
    assert reply.body == b"Hello, world!" and reply.header(b"x-a") == b"1"
    assert reply.header(b"server") == b"caboose" and reply.header(b"date") is not None


def test_post_echo(client: Client, port: int) -> None:
    body = bytes(range(256)) * 100
    reply = client.fetch(port, b"POST", b"/echo", body=body)
    assert reply.status == 200 and reply.complete
    assert reply.body == body and reply.header(b"content-length") == b"%d" % len(body)


def test_response_trailers_with_te(client: Client, port: int) -> None:
    reply = client.fetch(port, b"GET", b"/trailers", headers=TE)
    assert reply.status == 200 and reply.complete
    assert reply.body == b"hello" and reply.trailers == [(b"x-checksum", b"abc")]


@pytest.mark.parametrize("query", ["whole", "streamed"])
def test_headers_as_lists_tuples_and_generators(client: Client, port: int, query: str) -> None:
    reply = client.fetch(port, b"GET", b"/header-shapes?" + query.encode(), headers=TE)
    assert reply.status == 200 and reply.complete
    assert reply.header(b"x-list") == b"1" and reply.header(b"x-tuple") == b"2"
    assert reply.body == (b"whole" if query == "whole" else b"streamed")
    assert reply.trailers == ([] if query == "whole" else [(b"x-gen", b"3")])


def test_response_trailers_dropped_without_te(client: Client, port: int) -> None:
    reply = client.fetch(port, b"GET", b"/trailers")
    assert reply.status == 200 and reply.complete
    assert reply.body == b"hello" and reply.trailers == []
    assert b"x-checksum" not in reply.names()


def test_head_gets_no_body_and_no_trailers(client: Client, port: int) -> None:
    reply = client.fetch(port, b"HEAD", b"/trailers", headers=TE)
    assert reply.status == 200 and reply.complete
    assert reply.body == b"" and reply.trailers == []


def test_exception_before_start_is_a_500(client: Client, port: int) -> None:
    reply = client.fetch(port, b"GET", b"/fail-before")
    assert reply.status == 500 and reply.complete and not reply.aborted
    assert reply.body == b"Internal Server Error\n"


def test_exception_after_start_aborts_the_response(client: Client, port: int) -> None:
    reply = client.fetch(port, b"GET", b"/fail-after")
    assert reply.status == 200 and reply.body == b"partial"
    assert reply.aborted and not reply.complete and reply.trailers == []


def test_request_trailers_reach_the_app(client: Client, port: int) -> None:
    trailers = [(b"x-checksum", b"abc"), (b"x-sig", b"s1")]
    reply = client.fetch(port, b"POST", b"/echo", body=b"hello", trailers=trailers)
    assert reply.status == 200 and reply.complete and reply.body == b"hello"
    assert reply.header(b"t-x-checksum") == b"abc" and reply.header(b"t-x-sig") == b"s1"


def test_body_after_trailers_raises_in_the_app(client: Client, port: int, record: Recorder) -> None:
    reply = client.fetch(port, b"GET", b"/body-after-trailers", headers=TE)
    assert reply.status == 200 and reply.complete and not reply.aborted
    assert reply.body == b"hello" and reply.trailers == [(b"x-checksum", b"abc")]
    # The client may read the whole response before the app reaches its late send.
    deadline = time.monotonic() + 5
    while not record.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(record.errors) == 1 and isinstance(record.errors[0], RuntimeError)
    assert "after the response completed" in str(record.errors[0])


def test_header_with_crlf_raises_in_the_app_and_is_never_written(
    client: Client, port: int, record: Recorder
) -> None:
    reply = client.fetch(port, b"GET", b"/bad-header")
    assert len(record.errors) == 1 and isinstance(record.errors[0], RuntimeError)
    assert reply.status == 500 and reply.complete
    assert not {b"x-bad", b"x-injected"} & reply.names()
    assert b"never" not in reply.body


def test_disconnect_while_streaming(client: Client, port: int, record: Recorder) -> None:
    client.leave_mid_response(port, b"/stream")
    assert record.stream_done.wait(TIMEOUT), "the app never finished"
    assert record.errors == []
    assert record.disconnected, "the app never received http.disconnect"
    assert record.refused_sends == 3
