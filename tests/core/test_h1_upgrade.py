"""The HTTP/1.1 core around an Upgrade: the 101 it writes, the bytes it holds, the 408."""

from __future__ import annotations

import pytest

from caboose.core.events import RequestReceived, StreamEnded
from caboose.core.h1 import ConnectionState, H1Connection
from caboose.errors import LocalProtocolError

UPGRADE = b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


def test_an_upgrade_request_says_so_and_holds_what_follows() -> None:
    conn = H1Connection()
    events = conn.receive_data(UPGRADE + b"\x81\x05early")
    head = events[0]
    assert isinstance(head, RequestReceived) and head.upgrade == b"websocket"
    assert events[1:] == [StreamEnded(1)]
    assert conn.receive_data(b"later") == []  # held too, not parsed as HTTP/1.1


def test_switching_writes_the_101_and_hands_over_the_held_bytes() -> None:
    conn = H1Connection()
    conn.receive_data(UPGRADE + b"first")
    conn.receive_data(b"second")
    conn.switch_protocols(1, b"websocket", [(b"sec-websocket-accept", b"abc")])
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"upgrade: websocket\r\n" in out and b"sec-websocket-accept: abc\r\n" in out
    assert out.endswith(b"\r\n\r\n")
    assert conn.state is ConnectionState.SWITCHED
    assert conn.trailing_data() == b"firstsecond"
    assert conn.receive_data(b"more") == []  # no longer HTTP/1.1's to parse


def test_a_declined_upgrade_resumes_with_the_pipelined_request() -> None:
    conn = H1Connection()
    conn.receive_data(UPGRADE + NEXT)
    assert not conn.resumable  # its response is still owed
    conn.send_response(1, 404, [], b"no")
    assert conn.resumable
    events = conn.resume()
    assert isinstance(events[0], RequestReceived) and events[0].target == b"/next"
    assert not conn.resumable


def test_only_a_request_that_asked_can_switch() -> None:
    conn = H1Connection()
    conn.receive_data(NEXT)
    with pytest.raises(LocalProtocolError):
        conn.switch_protocols(1, b"websocket")


def test_the_408_comes_from_the_core() -> None:
    conn = H1Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHo")
    conn.send_timeout()
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"connection: close" in out
    assert conn.state is ConnectionState.DONE


def test_a_408_never_cuts_into_an_owed_response() -> None:
    conn = H1Connection()
    conn.receive_data(NEXT + b"GET / HTTP/1.1\r\nHo")
    conn.send_timeout()
    assert conn.data_to_send() == b""
    conn.send_response(1, 200, [], b"ok")
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in out
    assert conn.state is ConnectionState.DONE
