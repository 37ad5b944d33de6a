"""HTTP/2 streams over a real socket, driven by peers we did not write (``h2``, raw frames):
resets, GOAWAY both ways, flow control both ways, stream limits, header limits, idleness."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from caboose.errors import ClientDisconnected
from tests.h2peer import (
    CANCEL,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_INITIAL_WINDOW_SIZE,
    H2Peer,
    RawPeer,
    goaway,
    headers,
    ping,
    request_fields,
    settings,
    settle,
)
from tests.serving import running
from tests.tls import issue_certificate

HELLO = b"Hello, world!"


async def respond(send: Any, body: bytes = HELLO, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    for _ in range(100_000):  # bounded: a request body is at most this many messages here
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return bytes(body)


def size_of(scope: Any, default: int = 100_000) -> int:
    return int(scope["query_string"] or default)


# -- RST_STREAM from the client ----------------------------------------------------------------


def test_client_cancel_disconnects_the_app_and_its_sends_raise() -> None:
    seen: dict[str, Any] = {}
    finished = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/stream":
            return await respond(send)
        await receive()  # the (empty) request body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
        try:
            seen["message"] = await receive()  # nothing more to read: only the reset wakes it
            await asyncio.sleep(0.05)  # well within the grace: not cancelled
            await send({"type": "http.response.body", "body": b"y" * 10, "more_body": True})
            seen["sends"] = "returned"
        except BaseException as exc:
            seen["error"] = exc
            raise
        finally:
            finished.set()

    with running(app, cancel_grace=0.5) as server, H2Peer(server.port) as peer:
        stream_id = peer.request("/stream")
        log = peer.stream(stream_id)
        assert peer.pump(lambda: len(log.data) >= 100)
        peer.reset(stream_id, CANCEL)
        assert settle(finished.is_set), "the app never finished after the reset"
        assert seen.get("message") == {"type": "http.disconnect"}
        assert isinstance(seen.get("error"), ClientDisconnected), seen  # ASGI 2.4: an OSError
        assert "sends" not in seen
        peer.pump(timeout=0.2)
        assert bytes(log.data) == b"x" * 100  # nothing sent after the reset reached us
        assert peer.get("/again").status == 200  # the connection goes on


def test_app_ignoring_a_reset_is_cancelled_after_the_grace_period() -> None:
    seen: dict[str, float] = {}
    cancelled = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/ignore":
            return await respond(send)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled_at"] = time.monotonic()
            cancelled.set()
            raise

    with running(app, cancel_grace=0.3) as server, H2Peer(server.port) as peer:
        stream_id = peer.request("/ignore")
        assert peer.pump(lambda: bool(peer.stream(stream_id).data))
        reset_at = time.monotonic()
        peer.reset(stream_id, CANCEL)
        assert settle(cancelled.is_set, 5), "the app was never cancelled"
        delay = seen["cancelled_at"] - reset_at
        assert 0.25 <= delay < 2.0, delay
        assert peer.get("/").status == 200


def test_app_ignoring_a_lost_connection_is_cancelled_after_the_grace_period() -> None:
    """docs/http2.md: a reset or lost connection makes receive() return http.disconnect,
    makes send() raise, and cancels an unfinished app after --cancel-grace."""
    seen: dict[str, float] = {}
    cancelled = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled_at"] = time.monotonic()
            cancelled.set()
            raise

    options = {"cancel_grace": 0.3, "timeout_graceful_shutdown": 1.0}
    with running(app, **options) as server:
        with H2Peer(server.port) as peer:
            stream_id = peer.request("/")
            assert peer.pump(lambda: bool(peer.stream(stream_id).data))
        lost_at = time.monotonic()
        assert settle(cancelled.is_set, 3), "the app outlived its connection"
        assert 0.25 <= seen["cancelled_at"] - lost_at < 2.0


# -- GOAWAY ------------------------------------------------------------------------------------


def test_graceful_shutdown_sends_goaway_and_finishes_the_stream_in_flight() -> None:
    in_flight = threading.Event()
    paths: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        in_flight.set()
        await asyncio.sleep(0.5)
        await respond(send, b"done")

    with running(app, timeout_graceful_shutdown=5.0) as server, RawPeer(server.port) as peer:
        assert peer.send(peer.open(1, "/slow"))
        assert settle(in_flight.is_set)
        server.request_exit()
        assert peer.pump(lambda: peer.goaway is not None, 3), "no GOAWAY on shutdown"
        away = peer.goaway
        assert away is not None
        assert (away.error_code, away.last_stream_id) == (NO_ERROR, 1)
        peer.send(peer.open(3, "/late"))  # §6.8: above last_stream_id, never processed
        log = peer.wait(1)
        assert (log.status, bytes(log.data), log.reset) == (200, b"done", None)
        assert log.finished_at is not None and log.finished_at >= away.at
        assert peer.wait_closed(3), "the connection stayed open after the last stream"
        assert paths == ["/slow"]
        assert peer.stream(3).status is None


def test_client_goaway_lets_streams_in_flight_complete() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)
        await respond(send, b"finished")

    with running(app) as server, RawPeer(server.port) as peer:
        assert peer.send(peer.open(1) + peer.open(3))
        assert peer.send(goaway(0, NO_ERROR))
        first, second = peer.wait(1), peer.wait(3)
        assert (first.status, bytes(first.data)) == (200, b"finished")
        assert (second.status, bytes(second.data)) == (200, b"finished")
        assert peer.wait_closed(3), "the server kept the connection after both streams"


# -- outbound flow control: the client's windows -----------------------------------------------


def sized_app(seen: dict[str, Any]) -> Any:
    """``/big?N`` answers N bytes in one send and records when that send returned."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        if scope["path"] != "/big":
            return await respond(send)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"b" * size_of(scope)})
        seen.setdefault("sent_at", {})[scope["query_string"]] = time.monotonic()

    return app


def test_send_waits_for_the_clients_window_update() -> None:
    seen: dict[str, Any] = {}
    local = {SETTINGS_INITIAL_WINDOW_SIZE: 100}
    with (
        running(sized_app(seen)) as server,
        H2Peer(server.port, local=local, connection_window=1 << 20) as peer,
    ):
        stream_id = peer.request("/big?100000")
        peer.hold.add(stream_id)  # never credit this stream back by ourselves
        log = peer.stream(stream_id)
        assert peer.pump(lambda: len(log.data) >= 100)
        peer.pump(timeout=0.4)  # nothing beyond the window may come
        assert len(log.data) == 100 and not log.done
        assert "sent_at" not in seen, "send() returned while the window was shut"
        opened_at = time.monotonic()
        peer.open_window(stream_id, 200_000)
        peer.wait(stream_id)
        assert bytes(log.data) == b"b" * 100_000 and log.ended
        assert settle(lambda: "sent_at" in seen)
        assert seen["sent_at"][b"100000"] > opened_at


def test_a_window_never_opened_resets_the_stream_after_the_write_timeout() -> None:
    seen: dict[str, Any] = {}
    local = {SETTINGS_INITIAL_WINDOW_SIZE: 100}
    with (
        running(sized_app(seen), http2_write_timeout=0.5) as server,
        H2Peer(server.port, local=local, connection_window=1 << 20) as peer,
    ):
        stream_id = peer.request("/big?100000")
        peer.hold.add(stream_id)
        log = peer.wait(stream_id, timeout=4)
        assert log.reset is not None and not log.ended, log
        assert len(log.data) == 100
        assert log.first_data_at is not None and log.finished_at is not None
        assert 0.4 <= log.finished_at - log.first_data_at < 3.0
        assert settle(lambda: "sent_at" in seen), "the app's send() never returned"
        small = peer.get("/small")  # fits in the 100-byte window
        assert (small.status, bytes(small.data)) == (200, HELLO)


def test_a_stalled_stream_does_not_hold_back_the_others() -> None:
    seen: dict[str, Any] = {}
    local = {SETTINGS_INITIAL_WINDOW_SIZE: 100}
    with (
        running(sized_app(seen)) as server,
        H2Peer(server.port, local=local, connection_window=1 << 24) as peer,
    ):
        stalled = peer.request("/big?100000")
        peer.hold.add(stalled)
        flowing = peer.request("/big?20000")  # credited back as it arrives
        log = peer.wait(flowing, timeout=8)
        assert (log.status, len(log.data), log.ended) == (200, 20_000, True)
        stuck = peer.stream(stalled)
        assert len(stuck.data) == 100 and not stuck.done
        assert peer.get("/other").status == 200
        peer.close()  # before the server stops: the stalled send ends with the connection


# -- inbound flow control: our windows ---------------------------------------------------------


def test_the_client_cannot_send_beyond_the_window_until_the_app_reads() -> None:
    release = threading.Event()
    reading = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reading.set()
        await asyncio.to_thread(release.wait, 10)
        body = await read_body(receive)
        await respond(send, b"%d" % len(body))

    total = 200_000
    with running(app, http2_stream_window=65535) as server, H2Peer(server.port) as peer:
        conn = peer.conn
        stream_id = peer.request("/upload", method="POST", end_stream=False)
        assert settle(reading.is_set)
        sent = 0
        for _ in range(100):  # bounded: the window holds a few frames at most
            room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if room <= 0:
                break
            conn.send_data(stream_id, b"u" * room)
            sent += room
            peer.flush()
        assert sent == 65535
        peer.pump(timeout=0.5)  # the app has not read: no WINDOW_UPDATE may come
        assert conn.local_flow_control_window(stream_id) == 0
        release.set()
        peer.upload(stream_id, b"u" * (total - sent))
        log = peer.wait(stream_id)
        assert (log.status, bytes(log.data)) == (200, b"%d" % total)


def test_a_reading_app_keeps_a_large_upload_flowing() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        await respond(send, b"%d" % len(body))

    total = 2_000_000
    with running(app, http2_stream_window=65535) as server, H2Peer(server.port) as peer:
        started = time.monotonic()
        log = peer.get("/upload", method="POST", body=b"u" * total, timeout=10)
        elapsed = time.monotonic() - started
    assert (log.status, bytes(log.data)) == (200, b"%d" % total)
    assert elapsed < 10


# -- limits ------------------------------------------------------------------------------------


def test_streams_beyond_max_concurrent_streams_are_refused() -> None:
    release = threading.Event()
    started: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            started.append(1)
            await asyncio.to_thread(release.wait, 5)
        await respond(send)

    with (
        running(app, http2_max_concurrent_streams=5) as server,
        RawPeer(server.port) as peer,
    ):
        assert peer.server_settings is not None
        assert peer.server_settings.get(0x3) == 5  # SETTINGS_MAX_CONCURRENT_STREAMS
        ids = list(range(1, 15, 2))  # seven streams, two too many
        assert peer.send(b"".join(peer.open(i, "/hold") for i in ids))
        extra = [peer.stream(i) for i in ids[5:]]
        assert peer.pump(lambda: all(log.done for log in extra), 3)
        assert [log.reset for log in extra] == [REFUSED_STREAM, REFUSED_STREAM]
        assert settle(lambda: len(started) == 5)
        peer.pump(timeout=0.2)
        assert len(started) == 5
        release.set()
        for stream_id in ids[:5]:
            log = peer.wait(stream_id)
            assert (log.status, log.reset) == (200, None)
        assert peer.send(peer.open(15))
        assert peer.wait(15).status == 200


def test_a_header_list_over_the_limit_gets_431_and_the_connection_goes_on() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        fields = dict(scope["headers"])
        await respond(send, b"%d" % len(fields.get(b"x-c", b"")))

    big = [(b"x-a", b"a" * 2000), (b"x-b", b"b" * 2000), (b"x-c", b"c" * 2000)]
    with (
        running(app, http2_max_header_list_size=5000) as server,
        H2Peer(server.port) as peer,
    ):
        refused = peer.get("/", extra=big)
        assert refused.status == 431 and refused.ended
        # h2 indexed those fields in its HPACK table: the server's table must match, or the
        # references below decode wrongly (or fail the connection).
        again = peer.get("/", extra=big[2:])
        assert (again.status, bytes(again.data)) == (200, b"2000")
        huge = peer.get("/", extra=[(b"x-huge", b"h" * 8000)])
        assert huge.status == 431
        assert peer.get("/").status == 200
        assert peer.goaway is None


# -- idleness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("requests", [0, 1])
def test_an_idle_connection_gets_goaway_and_is_closed(requests: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)

    with running(app, timeout_keep_alive=0.5) as server, RawPeer(server.port) as peer:
        for stream_id in range(1, 2 * requests, 2):
            assert peer.send(peer.open(stream_id))
            assert peer.wait(stream_id).status == 200
        idle_from = time.monotonic()
        assert peer.wait_closed(4), "the idle connection was never closed"
        away = peer.goaway
        assert away is not None, "closed without GOAWAY"
        assert (away.error_code, away.last_stream_id) == (NO_ERROR, max(0, 2 * requests - 1))
        assert 0.4 <= away.at - idle_from < 3.0


# -- error responses under flow control ---------------------------------------------------------


async def fails_before_start(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("boom before http.response.start")


def test_an_error_response_finishes_once_the_window_opens() -> None:
    """The 500 that replaces a failed app waits for the client's window like any response:
    its head goes out, its body when WINDOW_UPDATE comes, and the stream ends (it used to
    hang, its body parked in a coroutine nobody awaited)."""
    local = {SETTINGS_INITIAL_WINDOW_SIZE: 0}
    with (
        running(fails_before_start) as server,
        H2Peer(server.port, local=local, connection_window=1 << 20) as peer,
    ):
        stream_id = peer.request("/")
        log = peer.stream(stream_id)
        assert peer.pump(lambda: log.status is not None)
        assert log.status == 500 and not log.done
        peer.open_window(stream_id, 1000)
        log = peer.wait(stream_id)
        assert log.ended and bytes(log.data) == b"Internal Server Error\n"


# -- malformed requests ---------------------------------------------------------------------------


def test_a_host_naming_another_authority_is_malformed() -> None:
    """RFC 9113 §8.3.1 over a real socket: a Host that differs from :authority makes the
    request malformed (RST_STREAM PROTOCOL_ERROR); the app is never called; a matching Host
    is served."""
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["path"])
        await respond(send)

    with running(app) as server, RawPeer(server.port) as peer:
        other = request_fields("/other", extra=[(b"host", b"elsewhere.example")])
        same = request_fields("/same", extra=[(b"host", b"127.0.0.1")])
        peer.send(headers(1, other) + headers(3, same))
        assert peer.wait(1).reset == PROTOCOL_ERROR
        assert peer.wait(3).status == 200
    assert called == ["/same"]


def test_closing_after_a_client_goaway_does_not_reset_what_it_wrote() -> None:
    """The client sends GOAWAY with a megabyte of PINGs behind it, so the server closes with
    input still unread. A plain close makes Linux answer with a TCP RST that destroys the
    server's last frames (the client read "connection reset" 10 times in 10); the lingering
    close half-closes and drains instead, and the client reads a clean end."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)

    with running(app) as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(PREFACE + settings({}) + settings({}, ack=True))
                assert sock.recv(65536)  # the server's SETTINGS
                with contextlib.suppress(OSError):  # the server may stop reading first
                    sock.sendall(goaway(0) + ping() * 60_000)
                received = bytearray()
                while chunk := sock.recv(65536):  # ConnectionResetError fails the test
                    received += chunk
            assert received  # the PING ACKs and the GOAWAY came, then a clean EOF


def test_over_tls_a_request_crossing_our_goaway_does_not_reset_the_connection(
    tmp_path: Path,
) -> None:
    """TLS cannot half-close: after its GOAWAY the server sends close_notify and must go on
    reading (and discarding) until the client answers, or a request the client sent before it
    read the GOAWAY meets a TCP RST, and its next write fails with a broken pipe (how curl
    loses a request). Here the client never closes: it reads the GOAWAY, then a clean end."""
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["path"])
        await respond(send)

    tls = issue_certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(tls.ca))
    options = tls.server_options()
    with (
        running(app, timeout_keep_alive=1, **options) as server,
        RawPeer(server.port, tls=context) as peer,
    ):
        peer.send(headers(1, request_fields("/")))
        assert peer.wait(1).status == 200
        time.sleep(2.5)  # idle: the server's GOAWAY (within two ticks) waits unread
        assert peer.send(headers(3, request_fields("/late")))  # crossing the GOAWAY
        time.sleep(0.5)  # a reset would be back by now
        assert peer.send(ping()), "the server reset the connection"
        assert peer.wait_closed()
        assert not peer.broken
        assert [(g.last_stream_id, g.error_code) for g in peer.goaways] == [(1, NO_ERROR)]
    assert called == ["/"]  # the late request was never started
