"""Our client against an HTTP/1.1 server written here on plain sockets: keep-alive, chunked
bodies and trailers both ways, size limits, close-delimited bodies, stale connections,
silence, broken responses and backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Self

import pytest

from caboose.client import (
    Client,
    CloseReason,
    ConnectionLost,
    ReadTimeout,
    RemoteProtocolError,
    ResponseTooLarge,
)
from tests.client.h2server import run, until

Script = Callable[["Conn"], Awaitable[None]]


class Conn:
    """One accepted connection, as the script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def head(self) -> bytes:
        """The next request head, or b"" at EOF."""
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""

    async def chunked_body(self) -> tuple[bytes, bytes]:
        """A chunked body and its trailer section."""
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                break
            body += await self.reader.readexactly(size + 2)
            body = body[:-2]
        trailers = await self.reader.readuntil(b"\r\n")
        while trailers[-4:] != b"\r\n\r\n" and trailers != b"\r\n":
            trailers += await self.reader.readuntil(b"\r\n")
        return body, trailers

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class H1Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed_by_client: list[bool] = []
        self.conns: list[Conn] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.writer.close()
        await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = Conn(reader, writer)
        self.conns.append(conn)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def keep_alive(response: bytes, heads: list[bytes] | None = None) -> Script:
    async def script(conn: Conn) -> None:
        while head := await conn.head():
            if heads is not None:
                heads.append(head)
            conn.send(response)

    return script


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_keep_alive_reuses_the_connection_and_sends_te() -> None:
    heads: list[bytes] = []

    async def scenario() -> None:
        async with H1Server(keep_alive(OK, heads)) as server, Client(timeout=5) as client:
            for _ in range(3):
                response = await client.get(server.url("/a?b=c"))
                assert response.content == b"ok" and response.http_version == "HTTP/1.1"
            assert server.connections == 1
        first = heads[0].lower()
        assert first.startswith(b"get /a?b=c http/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}\r\n".encode() in first
        assert b"te: trailers\r\n" in first and b"connection: te\r\n" in first

    run(scenario())


def test_chunked_response_trailers() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: checksum\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nchecksum: abc123\r\nx-timing: 5ms\r\n\r\n"
    )

    async def scenario() -> None:
        async with H1Server(keep_alive(response)) as server, Client(timeout=5) as client:
            got = await client.get(server.url())
            assert got.content == b"hello world"
            assert got.trailers["checksum"] == "abc123" and got.trailers["x-timing"] == "5ms"
            assert got.close_reason is CloseReason.ENDED

    run(scenario())


def test_streamed_request_body_with_trailers_goes_chunked() -> None:
    seen: dict[str, bytes] = {}

    async def script(conn: Conn) -> None:
        seen["head"] = await conn.head()
        seen["body"], seen["trailers"] = await conn.chunked_body()
        conn.send(OK)

    async def body() -> Any:
        for piece in (b"one ", b"two ", b"three"):
            yield piece

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            response = await client.request(
                "PUT", server.url(), content=body(), trailers={"x-checksum": "42"}
            )
            assert response.status == 200
        assert b"transfer-encoding: chunked" in seen["head"].lower()
        assert b"content-length" not in seen["head"].lower()
        assert seen["body"] == b"one two three"
        assert seen["trailers"] == b"x-checksum: 42\r\n\r\n"

    run(scenario())


def test_bytes_body_with_trailers_goes_chunked_too() -> None:
    seen: dict[str, bytes] = {}

    async def script(conn: Conn) -> None:
        seen["head"] = await conn.head()
        seen["body"], seen["trailers"] = await conn.chunked_body()
        conn.send(OK)

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            await client.request("POST", server.url(), content=b"data", trailers=[("a", "b")])
        assert seen["body"] == b"data" and seen["trailers"] == b"a: b\r\n\r\n"

    run(scenario())


def eof_seen(server: H1Server) -> Callable[[], bool]:
    return lambda: bool(server.conns) and server.conns[0].reader.at_eof()


def test_max_size_by_content_length_closes_the_connection() -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"x" * 100

    async def scenario() -> None:
        async with (
            H1Server(keep_alive(response)) as server,
            Client(timeout=5, max_response_size=1000) as client,
        ):
            with pytest.raises(ResponseTooLarge) as caught:
                await client.get(server.url())
            assert "announces 5000" in str(caught.value)
            await until(eof_seen(server))

    run(scenario())


def test_max_size_by_bytes_received() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(10):
            conn.send(b"100\r\n" + b"y" * 256 + b"\r\n")
            await asyncio.sleep(0.01)
        await asyncio.sleep(5)

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            with pytest.raises(ResponseTooLarge) as caught:
                await client.get(server.url(), max_response_size=1000)
            assert caught.value.reason is CloseReason.MAX_SIZE_EXCEEDED
            await until(eof_seen(server))

    run(scenario())


def test_close_delimited_body_ends_with_the_connection() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        conn.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        conn.writer.close()

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            response = await client.get(server.url())
            assert response.content == b"until the end"
            assert response.close_reason is CloseReason.ENDED

    run(scenario())


def test_a_stale_kept_alive_connection_is_retried_on_a_new_one() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        conn.send(OK)
        await conn.head()  # the second request arrives; the server closes without a word
        conn.writer.close()

    async def serve_once_more(conn: Conn) -> None:
        await conn.head()
        conn.send(OK)

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            await client.get(server.url())
            server.script = serve_once_more
            response = await client.get(server.url())
            assert response.content == b"ok" and server.connections == 2

    run(scenario())


def test_silence_times_out_and_closes() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        await conn.reader.read()  # answer nothing, until the client leaves

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=0.3) as client:
            with pytest.raises(ReadTimeout) as caught:
                await client.get(server.url())
            assert caught.value.reason is CloseReason.INACTIVE
            await until(eof_seen(server))

    run(scenario())


def test_connection_lost_mid_body() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await asyncio.sleep(0.05)
        conn.writer.close()

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=5) as client:
            async with client.stream("GET", server.url()) as response:
                with pytest.raises(ConnectionLost) as caught:
                    await response.read()
            assert caught.value.reason is CloseReason.CONNECTION_LOST
            assert response.close_reason is CloseReason.CONNECTION_LOST

    run(scenario())


def test_a_malformed_response_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async with (
            H1Server(keep_alive(b"HTTP/1.1 2x0 Nope\r\n\r\n")) as server,
            Client(timeout=5) as client,
        ):
            with pytest.raises(RemoteProtocolError) as caught:
                await client.get(server.url())
            assert caught.value.reason is CloseReason.PROTOCOL_ERROR

    run(scenario())


def test_informational_responses_are_kept() -> None:
    response = b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n" + OK

    async def scenario() -> None:
        async with H1Server(keep_alive(response)) as server, Client(timeout=5) as client:
            got = await client.get(server.url())
            assert got.content == b"ok"
            [(status, fields)] = got.informational
            assert status == 103 and fields["link"] == "</s.css>; rel=preload"

    run(scenario())


def test_head_has_no_body_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        response = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
        async with H1Server(keep_alive(response)) as server, Client(timeout=5) as client:
            for _ in range(2):
                got = await client.request("HEAD", server.url())
                assert got.content == b"" and got.headers["content-length"] == "1000"
            assert server.connections == 1

    run(scenario())


def test_a_slow_reader_stops_the_server_writing() -> None:
    size = 32 << 20

    async def script(conn: Conn) -> None:
        await conn.head()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        conn.send(b"r" * size)
        await conn.writer.drain()

    async def scenario() -> None:
        async with H1Server(script) as server, Client(timeout=10) as client:
            async with client.stream("GET", server.url()) as response:
                await asyncio.sleep(0.5)
                transport = server.conns[0].writer.transport
                assert transport.get_write_buffer_size() > size // 2  # held back by us
                total = 0
                async for chunk in response:
                    total += len(chunk)
            assert total == size

    run(scenario())


def test_a_full_pool_times_out_waiting() -> None:
    async def script(conn: Conn) -> None:
        await conn.head()
        await conn.reader.read()  # hold the connection, answer nothing

    async def scenario() -> None:
        from caboose.client import PoolTimeout, Timeout

        timeout = Timeout(connect=5, read=5, write=5, pool=0.3)
        async with (
            H1Server(script) as server,
            Client(timeout=timeout, max_connections_per_origin=1) as client,
        ):
            holder = asyncio.create_task(client.get(server.url()))
            await until(lambda: server.connections == 1)
            with pytest.raises(PoolTimeout) as caught:
                await client.get(server.url())
            assert caught.value.reason is CloseReason.INACTIVE
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder

    run(scenario())
