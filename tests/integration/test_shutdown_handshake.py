"""A TLS connection accepted just before a graceful shutdown, its handshake still under way.

The server took the connection on (the kernel and the event loop accepted it), so the client
will not retry if it is cut: a handshake that fails is not a request a client may send again.
The shutdown waits for the handshake, then serves the connection as a shutdown serves a fresh
one: HTTP/1.1 answers the request on its way and closes, HTTP/2 says GOAWAY with last stream
id 0 (RFC 9113 §6.8), so the client retries its streams elsewhere. (Found by
test_zero_loss's reload under HTTP/2 load: curl's new connection failed its handshake.)
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
from hyperframe.frame import Frame, GoAwayFrame

from tests.apps import hello
from tests.h2peer import PREFACE
from tests.serving import read_all, running
from tests.tls import issue_certificate

PAUSE = 0.3  # the shutdown has begun and found no request in flight

# The two loops differ in how they hold a handshake under way; workers run uvloop.
pytestmark = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def client_context(ca: Path, alpn: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([alpn])
    return context


def test_http1_request_after_a_handshake_begun_before_the_shutdown_is_served(
    tmp_path: Path, loop: str
) -> None:
    files = issue_certificate(tmp_path)
    with running(hello, **files.server_options(), loop=loop) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(PAUSE)  # accepted by the server, no ClientHello yet
        server.request_exit()
        time.sleep(PAUSE)
        context = client_context(files.ca, "http/1.1")
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            out = read_all(tls)
    assert out.startswith(b"HTTP/1.1 200 OK"), out
    assert b"connection: close" in out.lower()
    assert out.endswith(b"Hello, world!")


def test_http2_after_a_handshake_begun_before_the_shutdown_hears_goaway(
    tmp_path: Path, loop: str
) -> None:
    files = issue_certificate(tmp_path)
    with running(hello, **files.server_options(), loop=loop) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(PAUSE)
        server.request_exit()
        time.sleep(PAUSE)
        context = client_context(files.ca, "h2")
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            tls.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
            out = read_all(tls)  # until the server closes: it must, cleanly
    frames = list(parse_frames(out))
    goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
    assert goaways, frames
    assert (goaways[0].error_code, goaways[0].last_stream_id) == (0, 0)


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames
