"""Our client against the ``h2`` library as a server: limits, resets, GOAWAY, flow control,
MAX_CONCURRENT_STREAMS, silence, cancellation and keep-alive PINGs, over real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import h2.events
import h2.settings
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame

from caboose.client import (
    Client,
    CloseReason,
    ConnectionLost,
    ReadTimeout,
    ResponseTooLarge,
    StreamRefused,
    StreamReset,
)
from caboose.errors import ErrorCode
from tests.client.h2server import H2Server, Peer, run, tls_context, until
from tests.tls import issue_certificate

S = h2.settings.SettingCodes


def h2c(**options: Any) -> Client:
    options.setdefault("timeout", 5.0)
    return Client(http2_prior_knowledge=True, **options)


def answer(body: bytes = b"hello", **extra: Any) -> Any:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            peer.respond(event.stream_id, body=body, **extra)

    return handler


def resets(server: H2Server) -> list[int]:
    return [event.error_code for event in server.of_type(h2.events.StreamReset)]


def test_trailers_reach_the_caller_over_tls(tmp_path: Path) -> None:
    cert = issue_certificate(tmp_path)
    handler = answer(b"body", trailers=[(b"grpc-status", b"0"), (b"grpc-message", b"ok")])

    async def scenario() -> None:
        async with H2Server(handler, tls=tls_context(cert)) as server:
            async with Client(verify=str(cert.ca)) as client:
                response = await client.get(server.url("/x"))
            request = server.of_type(h2.events.RequestReceived)[0]
            sent = dict(request.headers)
            assert sent[b":authority"] == f"127.0.0.1:{server.port}".encode()
            assert sent[b"te"] == b"trailers"
        assert response.http_version == "HTTP/2"
        assert response.content == b"body"
        assert response.trailers["grpc-status"] == "0"
        assert response.trailers.get_all("grpc-message") == ["ok"]
        assert response.close_reason is CloseReason.ENDED

    run(scenario())


def test_max_size_by_content_length_resets_before_any_body() -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            path = dict(event.headers)[b":path"]
            if path == b"/whole":
                peer.respond(event.stream_id, body=b"x" * 2000)
                return
            fields = [(b":status", b"200"), (b"content-length", b"2000")]
            peer.conn.send_headers(event.stream_id, fields)  # and the body, later
            peer.flush()

    async def scenario() -> None:
        async with H2Server(handler) as server, h2c(max_response_size=1000) as client:
            with pytest.raises(ResponseTooLarge) as caught:
                await client.get(server.url())
            assert "announces 2000" in str(caught.value)
            assert caught.value.reason is CloseReason.MAX_SIZE_EXCEEDED
            await until(lambda: resets(server) == [ErrorCode.CANCEL])
            # the connection is still good for the next exchange
            response = await client.get(server.url("/whole"), max_response_size=None)
            assert response.content == b"x" * 2000

    run(scenario())


def test_max_size_by_bytes_received_resets_the_stream() -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            peer.conn.send_headers(event.stream_id, [(b":status", b"200")])
            for _ in range(8):  # no content-length: only counting can tell
                peer.conn.send_data(event.stream_id, b"y" * 500)
            peer.flush()

    async def scenario() -> None:
        async with H2Server(handler) as server, h2c(max_response_size=1800) as client:
            async with client.stream("GET", server.url()) as response:
                assert response.status == 200
                with pytest.raises(ResponseTooLarge) as caught:
                    await response.read()
            assert "reached" in str(caught.value) and caught.value.limit == 1800
            assert response.close_reason is CloseReason.MAX_SIZE_EXCEEDED
            await until(lambda: resets(server) == [ErrorCode.CANCEL])

    run(scenario())


def test_warn_size_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            peer.conn.send_headers(event.stream_id, [(b":status", b"200")])
            for index in range(5):
                peer.conn.send_data(event.stream_id, b"z" * 400, end_stream=index == 4)
            peer.flush()

    async def scenario() -> None:
        async with H2Server(handler) as server, h2c(warn_response_size=500) as client:
            response = await client.get(server.url())
            assert len(response.content) == 2000

    with caplog.at_level(logging.WARNING, logger="caboose.client"):
        run(scenario())
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "warn_response_size 500" in warnings[0]


def test_reset_mid_body_raises_with_the_code() -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            peer.conn.send_headers(event.stream_id, [(b":status", b"200")])
            peer.conn.send_data(event.stream_id, b"partial")
            peer.later(0.05, lambda: peer.conn.reset_stream(event.stream_id, 2))

    async def scenario() -> None:
        async with H2Server(handler) as server, h2c() as client:
            async with client.stream("GET", server.url()) as response:
                assert await anext(aiter(response)) == b"partial"
                with pytest.raises(StreamReset) as caught:
                    await response.read()
            assert caught.value.error_code == ErrorCode.INTERNAL_ERROR
            assert "INTERNAL_ERROR" in str(caught.value)
            assert not caught.value.retryable
            assert response.close_reason is CloseReason.RESET_BY_PEER

    run(scenario())


def test_goaway_refuses_streams_above_its_last_id_and_lets_the_others_finish() -> None:
    seen: list[int] = []

    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            seen.append(event.stream_id)
            if len(seen) == 3:  # three in flight: keep the first, refuse the rest
                first = seen[0]
                # GOAWAY written by hand: h2 itself would send nothing more after it
                peer.flush()
                peer.writer.write(GoAwayFrame(0, last_stream_id=first).serialize())
                peer.later(0.05, lambda: peer.respond(first, body=b"finished"))

    async def scenario() -> None:
        async with H2Server(handler) as server, h2c() as client:
            results = await asyncio.gather(
                *(client.get(server.url(f"/{index}")) for index in range(3)),
                return_exceptions=True,
            )
            first, *refused = results
            assert isinstance(first, Exception) is False and first.content == b"finished"
            for error in refused:
                assert isinstance(error, StreamRefused) and error.retryable
                assert error.reason is CloseReason.REFUSED
            # a new request goes over a new connection
            server.handler = answer(b"again")
            again = await client.get(server.url())
            assert again.content == b"again" and server.connections == 2

    run(scenario())


def test_zero_window_waits_for_window_update() -> None:
    opened: list[int] = []
    received = bytearray()

    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            opened.append(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            received.extend(event.data)
            peer.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            peer.respond(event.stream_id, body=b"got %d" % len(received))

    async def scenario() -> None:
        settings = {S.INITIAL_WINDOW_SIZE: 0}
        async with H2Server(handler, settings=settings) as server, h2c() as client:
            task = asyncio.create_task(client.request("POST", server.url(), content=b"w" * 50_000))
            await until(lambda: bool(opened))
            await asyncio.sleep(0.2)
            assert not received and not task.done()  # nothing may be sent on a zero window
            peer = server.peers[0]
            peer.conn.increment_flow_control_window(50_000, stream_id=opened[0])
            peer.flush()
            response = await task
            assert response.content == b"got 50000" and bytes(received) == b"w" * 50_000

    run(scenario())


def test_requests_beyond_max_concurrent_streams_wait_in_order() -> None:
    order: list[bytes] = []
    open_now: set[int] = set()
    most = [0]

    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            order.append(dict(event.headers)[b":path"])
            open_now.add(event.stream_id)
            most[0] = max(most[0], len(open_now))

            def finish(stream_id: int = event.stream_id) -> None:
                open_now.discard(stream_id)
                peer.respond(stream_id, body=b"ok")

            peer.later(0.03, finish)

    async def scenario() -> None:
        settings = {S.MAX_CONCURRENT_STREAMS: 2}
        async with H2Server(handler, settings=settings) as server, h2c() as client:
            paths = [f"/{index}" for index in range(8)]
            results = await asyncio.gather(*(client.get(server.url(path)) for path in paths))
            assert [result.status for result in results] == [200] * 8
            assert order == [path.encode() for path in paths]  # FIFO
            assert most[0] == 2 and server.connections == 1

    run(scenario())


def test_a_server_that_never_answers_times_out_and_the_stream_is_reset() -> None:
    async def scenario() -> None:
        async with H2Server(lambda peer, event: None) as server, h2c(timeout=0.3) as client:
            with pytest.raises(ReadTimeout) as caught:
                await client.get(server.url())
            assert caught.value.reason is CloseReason.INACTIVE
            await until(lambda: resets(server) == [ErrorCode.CANCEL])

    run(scenario())


def test_cancelling_the_caller_resets_the_stream() -> None:
    async def scenario() -> None:
        async with H2Server(lambda peer, event: None) as server, h2c() as client:
            task = asyncio.create_task(client.get(server.url()))
            await until(lambda: bool(server.of_type(h2.events.RequestReceived)))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: resets(server) == [ErrorCode.CANCEL])

    run(scenario())


def test_a_slow_reader_holds_the_server_back() -> None:
    body = b"b" * 1_000_000
    sent: dict[str, Any] = {}

    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            sent["stream"] = event.stream_id
            peer.conn.send_headers(event.stream_id, [(b":status", b"200")])
            sent["offset"] = 0
            push(peer)
        elif isinstance(event, h2.events.WindowUpdated) and "stream" in sent:
            push(peer)

    def push(peer: Peer) -> None:
        stream_id = sent["stream"]
        while sent["offset"] < len(body):
            room = min(peer.conn.local_flow_control_window(stream_id), 16384)
            if room <= 0:
                return
            start = sent["offset"]
            sent["offset"] = start + room
            peer.conn.send_data(
                stream_id, body[start : start + room], end_stream=sent["offset"] >= len(body)
            )
        peer.flush()

    async def scenario() -> None:
        window = 64 * 1024
        async with (
            H2Server(handler) as server,
            h2c(stream_window=window, connection_window=window) as client,
        ):
            async with client.stream("GET", server.url()) as response:
                await asyncio.sleep(0.3)  # read nothing: the server must stop at our window
                assert sent["offset"] <= window
                data = await response.read()
            assert data == body

    run(scenario())


def test_keepalive_ping_detects_a_silent_server() -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            peer.respond(event.stream_id, body=b"ok")
            peer.mute = True  # from now on the server says nothing, not even PING ACKs

    async def scenario() -> None:
        async with (
            H2Server(handler) as server,
            h2c(keepalive_ping=0.1, ping_timeout=0.3) as client,
        ):
            await client.get(server.url())
            driver = next(iter(client._pool._drivers))
            await until(lambda: driver.error is not None, timeout=3)
            assert isinstance(driver.error, ConnectionLost)
            assert "PING" in str(driver.error)
            assert server.of_type(h2.events.PingReceived)

    run(scenario())


def test_keepalive_ping_keeps_an_answering_connection() -> None:
    async def scenario() -> None:
        async with (
            H2Server(answer()) as server,
            h2c(keepalive_ping=0.1, ping_timeout=0.5) as client,
        ):
            await client.get(server.url())
            await asyncio.sleep(0.6)
            assert len(server.of_type(h2.events.PingReceived)) >= 2
            await client.get(server.url())
            assert server.connections == 1

    run(scenario())


def test_waiting_for_a_stream_slot_is_bounded_by_the_pool_timeout() -> None:
    async def scenario() -> None:
        from caboose.client import PoolTimeout, Timeout

        settings = {S.MAX_CONCURRENT_STREAMS: 1}
        timeout = Timeout(connect=5, read=5, write=5, pool=0.3)
        async with (
            H2Server(lambda peer, event: None, settings=settings) as server,
            h2c(timeout=timeout) as client,
        ):
            holder = asyncio.create_task(client.get(server.url()))
            await until(lambda: bool(server.of_type(h2.events.RequestReceived)))
            with pytest.raises(PoolTimeout) as caught:
                await client.get(server.url())
            assert "allows 1" in str(caught.value)
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder

    run(scenario())


def test_a_window_that_never_opens_is_a_write_timeout() -> None:
    async def scenario() -> None:
        from caboose.client import Timeout, WriteTimeout

        settings = {S.INITIAL_WINDOW_SIZE: 0}
        timeout = Timeout(connect=5, read=5, write=0.3, pool=5)
        async with (
            H2Server(lambda peer, event: None, settings=settings) as server,
            h2c(timeout=timeout) as client,
        ):
            with pytest.raises(WriteTimeout) as caught:
                await client.request("POST", server.url(), content=b"never sent")
            assert caught.value.reason is CloseReason.INACTIVE
            await until(lambda: resets(server) == [ErrorCode.CANCEL])

    run(scenario())


def test_a_malformed_response_is_a_protocol_error_and_resets_the_stream() -> None:
    def handler(peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            fields = [(b":status", b"200"), (b"content-length", b"5")]
            peer.conn.send_headers(event.stream_id, fields)
            peer.flush()
            # more DATA than content-length (RFC 9113 §8.1.1), written past h2's own checks
            peer.writer.write(DataFrame(event.stream_id, b"0123456789").serialize())

    async def scenario() -> None:
        from caboose.client import RemoteProtocolError

        async with H2Server(handler) as server, h2c() as client:
            with pytest.raises(RemoteProtocolError) as caught:
                await client.get(server.url())
            assert "stream was reset (PROTOCOL_ERROR)" in str(caught.value)
            assert caught.value.reason is CloseReason.PROTOCOL_ERROR

    run(scenario())
