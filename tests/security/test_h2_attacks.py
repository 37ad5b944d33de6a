"""HTTP/2 attacks, crafted frame by frame with bounded loops. After each, the server must
still answer a normal request on a second connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.h2peer import (
    ENHANCE_YOUR_CALM,
    PREFACE,
    PROTOCOL_ERROR,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    H2Peer,
    RawPeer,
    continuation,
    data,
    frame,
    headers,
    hpack_indexed,
    hpack_literals,
    ping,
    request_fields,
    rst_stream,
    settings,
    window_update,
)
from tests.serving import read_all, running

HELLO = b"Hello, world!"
MAX_RESETS = 50


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``/slow`` takes its time (a stream that stays open); anything else says hello."""
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": HELLO})


def assert_still_serving(port: int, tls: ssl.SSLContext | None = None) -> None:
    """A well-behaved client on a fresh connection gets its answer."""
    with H2Peer(port, tls=tls) as peer:
        log = peer.get("/")
        assert (log.status, bytes(log.data)) == (200, HELLO)


def flood(peer: RawPeer, chunks: Iterator[bytes], *, rounds: int) -> int:
    """Send up to ``rounds`` chunks, reading between them; stop once the server said GOAWAY,
    closed, or stopped taking data. Returns how many chunks went out."""
    for sent in range(rounds):
        peer.pump(timeout=0)
        if peer.goaway is not None or peer.closed or not peer.send(next(chunks)):
            return sent
    return rounds


def repeat(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def assert_calmed(peer: RawPeer, timeout: float = 5.0) -> None:
    """The server ended the connection with GOAWAY ENHANCE_YOUR_CALM, then closed it."""
    assert peer.pump(lambda: peer.goaway is not None, timeout), "no GOAWAY"
    away = peer.goaway
    assert away is not None and away.error_code == ENHANCE_YOUR_CALM, away
    assert peer.wait_closed(timeout), "GOAWAY, but the connection stayed open"


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of Python allocations (every thread: the server's too) inside the block."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# -- resets ------------------------------------------------------------------------------------


def test_rapid_reset_gets_enhance_your_calm() -> None:
    """CVE-2023-44487: open a stream, reset it at once, again and again."""
    with running(app, http2_max_resets=MAX_RESETS, cancel_grace=0.1) as server:
        with RawPeer(server.port) as peer:

            def chunks() -> Iterator[bytes]:
                stream_id = 1
                while True:
                    out = bytearray()
                    for _ in range(25):
                        out += peer.open(stream_id, "/slow") + rst_stream(stream_id)
                        stream_id += 2
                    yield bytes(out)

            flood(peer, chunks(), rounds=40)  # 1000 streams at most
            assert_calmed(peer)
            away = peer.goaway
            assert away is not None
            # Budgets refill once a second: the flood is cut off near the budget, not at 1000.
            assert away.last_stream_id <= 2 * (3 * MAX_RESETS) + 1, away
        assert_still_serving(server.port)


@pytest.mark.parametrize("mistake", ["window_update_of_zero", "data_after_end_stream"])
def test_made_you_reset_gets_enhance_your_calm(mistake: str) -> None:
    """CVE-2025-8671: streams the server must reset for the client's errors spend the same
    budget as the client's own RST_STREAM."""
    with running(app, http2_max_resets=MAX_RESETS, cancel_grace=0.1) as server:
        with RawPeer(server.port) as peer:

            def bad(stream_id: int) -> bytes:
                if mistake == "window_update_of_zero":  # §6.9: a stream PROTOCOL_ERROR
                    return window_update(stream_id, 0)
                return data(stream_id, b"!")  # §5.1 half-closed (remote): STREAM_CLOSED

            def chunks() -> Iterator[bytes]:
                stream_id = 1
                while True:
                    out = bytearray()
                    for _ in range(10):
                        out += peer.open(stream_id, "/slow") + bad(stream_id)
                        stream_id += 2
                    yield bytes(out)

            flood(peer, chunks(), rounds=100)  # 1000 streams at most
            assert peer.pump(lambda: peer.stream(1).reset is not None or peer.closed)
            assert peer.stream(1).reset is not None, "the server did not reset the bad stream"
            assert_calmed(peer)
            away = peer.goaway
            assert away is not None and away.last_stream_id <= 2 * (3 * MAX_RESETS) + 1, away
        assert_still_serving(server.port)


# -- floods of frames that cost the server work ------------------------------------------------


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ack_flood_without_reading_is_cut_off(kind: str) -> None:
    """CVE-2019-9512 / CVE-2019-9515: bursts of frames that each demand an ACK, from a
    client that never reads: GOAWAY ENHANCE_YOUR_CALM, or at least a closed connection."""
    burst = (ping() if kind == "ping" else settings()) * 5000
    with running(app) as server:
        with RawPeer(server.port, rcvbuf=4096) as peer:
            for _ in range(20):  # 100 000 frames at most
                if not peer.send(burst):
                    break
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)
            assert peer.pump(lambda: peer.goaway is not None, 5) or peer.closed
            if peer.goaway is not None:
                assert peer.goaway.error_code == ENHANCE_YOUR_CALM, peer.goaway
        assert_still_serving(server.port)


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_paced_ack_flood_without_reading_does_not_pile_up_acks(kind: str) -> None:
    """The same flood paced so that no single read holds many frames (a per-read budget
    never trips): a client that reads nothing must not make the server queue ACKs without
    bound. The server stops reading (backpressure) or ends the connection.

    Socket buffers are made small on both sides (accepted sockets inherit the listener's),
    so a server that stops reading at its write buffer's high-water mark lets the client
    push only some 100 KB; 150 000 PINGs are 2.5 MB, of ACKs as much.
    """
    frames = 150_000
    batch = 250  # per write, well under the 1000 unflushed ACKs one read may queue
    chunk = (ping() if kind == "ping" else settings()) * batch
    with running(app) as server:
        for listener in server.sockets:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with RawPeer(server.port, rcvbuf=4096) as peer:
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            pushed = 0
            for _ in range(frames // batch):
                if not peer.try_send(chunk, timeout=0.5):
                    break  # the server stopped reading us (None) or is gone (False)
                pushed += batch
                time.sleep(0.001)  # let the server read each write on its own
            ended = peer.closed or peer.broken or peer.goaway is not None
            assert ended or pushed < 40_000, (
                f"the server read all {pushed} frames while owing every ACK: unbounded queue"
            )
        assert_still_serving(server.port)


def test_empty_data_flood_gets_enhance_your_calm() -> None:
    """CVE-2019-9518: DATA frames with nothing in them and no END_STREAM."""
    with running(app) as server:
        with RawPeer(server.port) as peer:
            assert peer.send(peer.open(1, "/slow", method="POST", end_stream=False))
            flood(peer, repeat(data(1, b"") * 50), rounds=20)  # 1000 frames at most
            assert_calmed(peer)
        assert_still_serving(server.port)


# -- header blocks -----------------------------------------------------------------------------


@pytest.mark.parametrize("fragment_size", [16384, 0])
def test_continuation_flood_is_a_connection_error_before_unbounded_buffering(
    fragment_size: int,
) -> None:
    """CVE-2024-27316: CONTINUATION frames without END_HEADERS, forever (full or empty)."""
    fragment = (b"\x00\x03x-a\x7f" + b"\x81\x7f" + b"a" * 16384)[:fragment_size]
    chunk = continuation(1, fragment) * 8
    with running(app) as server:
        with peak_memory() as peak, RawPeer(server.port) as peer:
            start = headers(1, request_fields("/"), end_headers=False)
            assert peer.send(start)
            sent = flood(peer, repeat(chunk), rounds=125)  # 1000 frames: 16 MB when full
            assert peer.pump(lambda: peer.goaway is not None, 5), "no GOAWAY"
            away = peer.goaway
            assert away is not None and away.error_code != 0, away
            assert peer.wait_closed()
            assert 1 not in peer.streams or peer.stream(1).status is None
            assert fragment_size == 0 or sent < 125, "16 MB of one header block taken in"
        assert peak[0] < 12 << 20, f"{peak[0]} bytes allocated at the peak"
        assert_still_serving(server.port)


def test_hpack_bomb_is_refused_without_huge_memory() -> None:
    """A 4000-octet value indexed once, then referenced by one-octet fields 16 000 times:
    64 MB of header list from 20 KB on the wire (RFC 7541 §7.3)."""
    block = (
        hpack_literals(request_fields("/"))
        + hpack_literals([(b"x-bomb", b"a" * 4000)], indexed=True)
        + hpack_indexed(62) * 16000
    )
    first, rest = block[:16384], block[16384:]
    with running(app) as server:
        with peak_memory() as peak, RawPeer(server.port) as peer:
            peer.send(
                headers(1, first, end_headers=False) + continuation(1, rest, end_headers=True)
            )
            log = peer.stream(1)
            assert peer.pump(lambda: log.done or peer.goaway is not None or peer.closed)
            refused = log.status == 431 or log.reset is not None or peer.goaway is not None
            assert refused, f"the bomb was not refused: {log}"
            assert log.status != 200
        assert peak[0] < 16 << 20, f"{peak[0]} bytes allocated at the peak"
        assert_still_serving(server.port)


# -- the connection preface --------------------------------------------------------------------


def test_preface_without_settings_first_gets_goaway_protocol_error() -> None:
    """§3.4: the client preface is the magic and then a SETTINGS frame."""
    with running(app) as server:
        with RawPeer(server.port, handshake=False) as peer:
            assert peer.send(PREFACE + ping())
            assert peer.wait_closed(), "the connection stayed open"
            away = peer.goaway
            assert away is not None and away.error_code == PROTOCOL_ERROR, away
            assert peer.ping_acks == 0
        assert_still_serving(server.port)


def test_broken_magic_in_cleartext_is_not_served() -> None:
    """Cleartext bytes that start like the preface and then differ: not HTTP/2, and not a
    request either (``PRI * HTTP/2.0`` is no HTTP/1.1 request): the connection is closed."""
    broken = PREFACE[:18] + b"XX\r\n\r\n" + settings() + frame(0x1, 0x5, 1, b"\x82")
    with running(app) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(broken)
            answer = read_all(sock)
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:100]
        assert HELLO not in answer
        assert_still_serving(server.port)


def test_broken_magic_over_tls_h2_gets_goaway_protocol_error(tmp_path: Path) -> None:
    """ALPN chose h2, so the first bytes must be the preface (§3.2, §3.4)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2"])
    broken = PREFACE[:18] + b"XX\r\n\r\n" + settings({SETTINGS_MAX_CONCURRENT_STREAMS: 10})
    with running(app, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path)) as server:
        with RawPeer(server.port, handshake=False, tls=context) as peer:
            peer.send(broken)
            assert peer.wait_closed(), "the connection stayed open"
            away = peer.goaway
            assert away is not None and away.error_code == PROTOCOL_ERROR, away
        assert_still_serving(server.port, tls=context)


def test_a_flooding_client_reads_goaway_enhance_your_calm() -> None:
    """RFC 9113 §5.4.1: the GOAWAY with its code reaches the client, also while it keeps
    flooding after it. (This does not reproduce a TCP RST eating the GOAWAY, which the
    lingering close in H2Driver.on_terminated guards against: loopback here never showed it.)"""
    from caboose.core.h2 import frames as fr

    with running(app) as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                burst = bytearray(fr.PREFACE)
                fr.write_settings(burst, [])
                for index in range(2000):
                    fr.write_ping(burst, b"%08d" % index)
                sock.sendall(bytes(burst))
                more = bytearray()
                for index in range(200):
                    fr.write_ping(more, b"%08d" % index)
                deadline = time.monotonic() + 0.5
                with contextlib.suppress(OSError):  # keeps flooding after our GOAWAY
                    while time.monotonic() < deadline:
                        sock.sendall(bytes(more))
                        time.sleep(0.01)
                codes = goaway_codes(sock)
            assert codes == [0xB]


@pytest.mark.parametrize(("limit", "expected"), [(5, [0xB]), (100, [])])
def test_empty_frame_budget_is_configurable(limit: int, expected: list[int]) -> None:
    from caboose.core.h2 import frames as fr
    from caboose.core.h2.hpack import Encoder

    async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    with running(slow_reader, http2_max_empty_frames=limit) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            out = bytearray(fr.PREFACE)
            fr.write_settings(out, [])
            block = Encoder().encode(
                [
                    (b":method", b"POST"),
                    (b":scheme", b"http"),
                    (b":path", b"/"),
                    (b":authority", b"a"),
                ]
            )
            fr.write_headers(out, 1, block)
            for _ in range(10):
                fr.write_data(out, 1, b"")  # carries nothing, ends nothing
            sock.sendall(bytes(out))
            time.sleep(0.3)
            sock.settimeout(0.5)
            codes = goaway_codes(sock)
        assert codes == expected


def goaway_codes(sock: socket.socket) -> list[int]:
    """Read until the server closes (or goes quiet) and return the GOAWAY error codes."""
    from caboose.core.h2 import frames as fr

    received = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
    frames = fr.FrameReader(max_frame_size=2**24 - 1).receive(bytes(received))
    return [
        int.from_bytes(payload[4:8], "big")
        for kind, _, _, payload in frames
        if kind == fr.FrameType.GOAWAY
    ]
