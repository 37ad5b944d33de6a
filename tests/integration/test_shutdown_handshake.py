"""A TLS connection accepted just before a graceful shutdown, its handshake still under way.

The server took the connection on (the kernel and the event loop accepted it), so the client
will not retry if it is cut: a handshake that fails is not a request a client may send again.
The shutdown waits for the handshake, then serves the connection as a shutdown serves a fresh
one: HTTP/1.1 answers the request on its way and closes; HTTP/2 serves the streams of the
first read and sends a GOAWAY that covers them (RFC 9113 §6.8), or GOAWAY with last stream id
0 after the grace if none come. (Found by test_zero_loss's reload under HTTP/2 load: curl's
new connection failed its handshake; then, given GOAWAY 0 at once, failed its streams.)
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import h2.config
import h2.connection
import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame

from tests.apps import hello
from tests.h2peer import PREFACE
from tests.serving import read_all, running
from tests.tls import issue_certificate

PAUSE = 0.3  # the shutdown has begun and found no request in flight
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")]

# The two loops differ in how they hold a handshake under way; workers run uvloop.
pytestmark = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def exchange_after_shutdown(tmp_path: Path, loop: str, alpn: str, request: bytes) -> bytes:
    """Connect, let the server begin its shutdown, then finish the TLS handshake, send
    ``request`` and read until the server closes (it must, cleanly)."""
    files = issue_certificate(tmp_path)
    with running(hello, **files.server_options(), loop=loop) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(PAUSE)  # accepted by the server, no ClientHello yet
        server.request_exit()
        time.sleep(PAUSE)
        context = ssl.create_default_context(cafile=str(files.ca))
        context.set_alpn_protocols([alpn])
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == alpn
            tls.sendall(request)
            return read_all(tls)


def test_http1_request_after_a_handshake_begun_before_the_shutdown_is_served(
    tmp_path: Path, loop: str
) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    out = exchange_after_shutdown(tmp_path, loop, "http/1.1", request)
    assert out.startswith(b"HTTP/1.1 200 OK"), out
    assert b"connection: close" in out.lower()
    assert out.endswith(b"Hello, world!")


def test_http2_streams_after_a_handshake_begun_before_the_shutdown_are_served(
    tmp_path: Path, loop: str
) -> None:
    """The first read's streams are served, and the GOAWAY that follows covers them."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    frames = parse_frames(exchange_after_shutdown(tmp_path, loop, "h2", client.data_to_send()))
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames), frames
    assert b"Hello, world!" in b"".join(f.data for f in frames if isinstance(f, DataFrame))
    goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(0, 1)], goaways


def test_http2_connection_that_brings_no_stream_hears_goaway_after_the_grace(
    tmp_path: Path, loop: str
) -> None:
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
    out = exchange_after_shutdown(tmp_path, loop, "h2", PREFACE + settings)
    goaways = [frame for frame in parse_frames(out) if isinstance(frame, GoAwayFrame)]
    assert [(g.error_code, g.last_stream_id) for g in goaways] == [(0, 0)], goaways


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames
