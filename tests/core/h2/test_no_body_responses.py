"""Responses without content (RFC 9110 §6.4.1, §9.3.2): the core drops their body bytes."""

from __future__ import annotations

from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import H2Connection

from .rawpeer import REQUEST, RawPeer

T = fr.FrameType


def served(method: bytes, status: int) -> list[tuple[int, int, int, bytes]]:
    conn = H2Connection(client_side=False)
    peer = RawPeer(conn).handshake()
    peer.send(peer.headers(1, [(b":method", method), *REQUEST[1:]]))
    conn.send_head(1, status, [(b"content-length", b"5")])
    assert conn.sendable(1) >= 5
    conn.send_data(1, b"hello", end_stream=True)
    return peer.output()


def test_head_response_sends_no_data_but_ends_the_stream() -> None:
    frames = served(b"HEAD", 200)
    assert [f[0] for f in frames] == [T.HEADERS, T.DATA]
    assert frames[1][3] == b"" and frames[1][1] & fr.FLAG_END_STREAM


def test_204_and_304_send_no_data() -> None:
    for status in (204, 304):
        data = [f for f in served(b"GET", status) if f[0] == T.DATA]
        assert [f[3] for f in data] == [b""]


def test_get_200_sends_its_body() -> None:
    data = [f for f in served(b"GET", 200) if f[0] == T.DATA]
    assert b"".join(f[3] for f in data) == b"hello"
