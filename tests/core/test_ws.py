"""core/ws.py without sockets: frames in, events out, bytes out (frames written by hand)."""

from __future__ import annotations

import struct
import zlib

import pytest

from caboose.core.ws import CloseReceived, Failed, MessageReceived, PongReceived, WSConnection
from tests.wsframes import BINARY, CLOSE, TEXT, VIOLATIONS, client_frame, close_code


def connection(max_size: int | None = 1 << 20) -> WSConnection:
    return WSConnection(max_size=max_size, extensions=[])


def test_fragments_become_one_message_of_the_first_frames_type() -> None:
    ws = connection()
    events = ws.receive_data(client_frame(TEXT, "hé".encode()[:2], fin=False))
    assert events == []
    events = ws.receive_data(client_frame(0x0, "hé".encode()[2:] + b"!"))
    assert events == [MessageReceived("hé!")]
    assert ws.receive_data(client_frame(BINARY, b"\x00")) == [MessageReceived(b"\x00")]


def test_invalid_utf8_fails_before_the_message_ends() -> None:
    ws = connection()
    events = ws.receive_data(client_frame(TEXT, b"ok \xff", fin=False))  # not final yet
    assert events == [Failed(1007, "invalid UTF-8 in a text message")]
    assert close_code(ws.data_to_send()) == 1007 and ws.ended  # the server ends first
    assert ws.receive_data(client_frame(TEXT, b"more")) == []  # nothing after a failure


def test_a_close_without_a_code_is_1005_and_the_close_is_echoed() -> None:
    ws = connection()
    assert ws.receive_data(client_frame(CLOSE)) == [CloseReceived(1005, "")]
    assert ws.data_to_send()[:1] == b"\x88" and ws.ended and ws.closing_done


def test_our_close_then_theirs_finishes_the_handshake() -> None:
    ws = connection()
    ws.send_close(4001, "bye")
    assert close_code(ws.data_to_send()) == 4001 and not ws.open and not ws.ended
    payload = struct.pack("!H", 4001) + b"bye"
    assert ws.receive_data(client_frame(CLOSE, payload)) == [CloseReceived(4001, "bye")]
    ws.data_to_send()
    assert ws.ended and ws.close_received


def test_pings_are_answered_and_pongs_reported() -> None:
    ws = connection()
    assert ws.receive_data(client_frame(0x9, b"hi")) == []
    assert ws.data_to_send() == b"\x8a\x02hi"  # PONG with the same payload, unmasked
    assert ws.receive_data(client_frame(0xA, b"ab")) == [PongReceived(b"ab")]


def test_a_message_over_the_limit_fails_with_1009_even_across_fragments() -> None:
    ws = connection(max_size=100)
    assert ws.receive_data(client_frame(BINARY, bytes(60), fin=False)) == []
    events = ws.receive_data(client_frame(0x0, bytes(60)))
    assert [type(e) for e in events] == [Failed] and events[0].code == 1009  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_violation_fails_with_its_code(name: str) -> None:
    frame, expected = VIOLATIONS[name]
    ws = connection()
    events = ws.receive_data(frame)
    assert [e.code for e in events if isinstance(e, Failed)] == [expected]
    assert close_code(ws.data_to_send()) == expected and ws.ended


def test_messages_are_written_unmasked_as_a_server_must() -> None:
    ws = connection()
    ws.send_message("hi")
    ws.send_message(b"\x01")
    assert ws.data_to_send() == b"\x81\x02hi\x82\x01\x01"


def test_with_permessage_deflate_messages_are_compressed_and_inflated() -> None:
    from websockets.extensions.permessage_deflate import PerMessageDeflate

    ws = WSConnection(max_size=1 << 20, extensions=[PerMessageDeflate(False, False, 15, 15)])
    ws.send_message("a" * 1000)
    frame = ws.data_to_send()
    assert frame[0] == 0xC1 and len(frame) < 100  # FIN, RSV1 (compressed), TEXT; small
    squeezer = zlib.compressobj(wbits=-15)
    payload = squeezer.compress(b"b" * 1000) + squeezer.flush(zlib.Z_SYNC_FLUSH)
    events = ws.receive_data(client_frame(BINARY, payload[:-4], rsv=4))  # RFC 7692 §7.2.1
    assert events == [MessageReceived(b"b" * 1000)]
