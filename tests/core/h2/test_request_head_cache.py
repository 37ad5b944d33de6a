"""The per-connection cache of validated request heads stays invisible to its users."""

from __future__ import annotations

from caboose.core.events import RequestReceived
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.hpack import Encoder
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode

from .rawpeer import REQUEST, RawPeer, read_frames


def server() -> RawPeer:
    return RawPeer(H2Connection(client_side=False)).handshake()


def block_frame(stream_id: int, block: bytes) -> bytes:
    out = bytearray()
    fr.write_headers(out, stream_id, block, end_stream=True)
    return bytes(out)


def requests(peer: RawPeer) -> list[RequestReceived]:
    return [e for e in peer.events if isinstance(e, RequestReceived)]


def test_a_repeated_block_gives_equal_requests_with_their_own_header_lists() -> None:
    peer = server()
    fields = [*REQUEST, (b"user-agent", b"test")]
    peer.send(block_frame(1, peer.encode(fields)))  # indexes the fields
    repeated = peer.encode(fields)  # all-indexed from now on
    peer.send(block_frame(3, repeated), block_frame(5, repeated))
    first, second, third = requests(peer)
    assert first.headers == second.headers == third.headers == [(b"user-agent", b"test")]
    second.headers.append((b"x-added", b"by the app"))
    assert third.headers == [(b"user-agent", b"test")]


def test_a_block_is_decoded_again_once_the_table_changed() -> None:
    peer = server()
    # Only x-a / x-b enter the dynamic table, so "index 62" is the newest of them.
    pseudo = [name for name, _ in REQUEST]
    encoder = Encoder(no_index_names=pseudo)
    peer.send(block_frame(1, encoder.encode([*REQUEST, (b"x-a", b"1")])))  # x-a at 62
    indexed = encoder.encode([*REQUEST, (b"x-a", b"1")])  # refers to index 62
    peer.send(block_frame(3, indexed))
    peer.send(block_frame(5, encoder.encode([*REQUEST, (b"x-b", b"2")])))  # x-b now at 62
    peer.send(block_frame(7, indexed))  # the same bytes as stream 3 now mean x-b: 2
    headers = [e.headers for e in requests(peer)]
    assert headers == [[(b"x-a", b"1")], [(b"x-a", b"1")], [(b"x-b", b"2")], [(b"x-b", b"2")]]


def test_a_malformed_repeated_block_is_refused_every_time() -> None:
    peer = server()
    bad = [*REQUEST, (b"connection", b"close")]
    peer.send(block_frame(1, peer.encode(bad)))
    repeated = peer.encode(bad)
    peer.send(block_frame(3, repeated), block_frame(5, repeated))
    resets = [f for f in peer.output() if f[0] == fr.FrameType.RST_STREAM]
    assert [(f[2], int.from_bytes(f[3], "big")) for f in resets] == [
        (1, ErrorCode.PROTOCOL_ERROR),
        (3, ErrorCode.PROTOCOL_ERROR),
        (5, ErrorCode.PROTOCOL_ERROR),
    ]
    assert requests(peer) == []


def test_protocol_becomes_valid_once_extended_connect_is_acknowledged() -> None:
    conn = H2Connection(client_side=False)
    peer = RawPeer(conn).handshake()
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/chat"),
        (b":authority", b"example.com"),
    ]
    peer.send(block_frame(1, peer.encode(fields)))
    repeated = peer.encode(fields)
    peer.send(block_frame(3, repeated))
    assert requests(peer) == []  # :protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL
    conn.update_settings({SettingCode.ENABLE_CONNECT_PROTOCOL: 1})
    conn.data_to_send()
    ack = bytearray()
    fr.write_settings_ack(ack)
    peer.send(bytes(ack), block_frame(5, repeated))
    assert [e.protocol for e in requests(peer)] == [b"websocket"]
    assert read_frames(b"") == []
