"""The WebSocket opening handshake (RFC 6455 §4.2, RFC 8441 §4), against the RFC's own example
and, for the accept token, against the ``websockets`` library's computation."""

from __future__ import annotations

import pytest
from websockets.utils import accept_key

from caboose.core.events import RequestReceived
from caboose.core.h1 import H1Connection
from caboose.core.ws_handshake import Offer, Refusal, accept_token, acceptance, read_offer

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example
GOOD = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def head(raw: bytes) -> RequestReceived:
    event = H1Connection().receive_data(raw)[0]
    assert isinstance(event, RequestReceived)
    return event


def test_the_rfcs_example_is_accepted_with_its_token() -> None:
    offer = read_offer(head(GOOD))
    assert isinstance(offer, Offer)
    assert offer.subprotocols == ["chat", "superchat"]
    fields = acceptance(offer, "chat", None, [(b"x-extra", b"1")])
    assert fields == [
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),  # RFC 6455 §1.3
        (b"sec-websocket-protocol", b"chat"),
        (b"x-extra", b"1"),
    ]


def test_the_token_matches_an_independent_computation() -> None:
    for key in (KEY, b"AQIDBAUGBwgJCgsMDQ4PEA=="):
        assert accept_token(key).decode() == accept_key(key.decode())


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b"GET /chat", b"POST /chat"), 400),
        ((b"Upgrade: websocket", b"Upgrade: chat"), 400),
        ((b"Connection: Upgrade", b"Connection: keep-alive"), 400),
        ((KEY, b"c2hvcnQ="), 400),  # decodes to 5 bytes
        ((KEY, b"not base64!!"), 400),
        ((b"Version: 13", b"Version: 8"), 426),
    ],
)
def test_a_bad_handshake_is_refused_with_its_status(
    change: tuple[bytes, bytes], status: int
) -> None:
    refusal = read_offer(head(GOOD.replace(*change)))
    assert isinstance(refusal, Refusal) and refusal.status == status
    if status == 426:
        assert (b"sec-websocket-version", b"13") in refusal.headers


def test_a_subprotocol_the_client_did_not_offer_cannot_be_chosen() -> None:
    offer = read_offer(head(GOOD))
    assert isinstance(offer, Offer)
    with pytest.raises(ValueError):
        acceptance(offer, "graphql-ws", None, [])


def test_the_app_cannot_override_the_handshake_fields() -> None:
    offer = read_offer(head(GOOD))
    assert isinstance(offer, Offer)
    fields = acceptance(offer, None, b"permessage-deflate", [(b"Sec-WebSocket-Accept", b"x")])
    assert fields == [
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]


def test_http2_extended_connect_needs_no_key() -> None:
    event = RequestReceived(
        1,
        b"CONNECT",
        b"/chat",
        [(b"sec-websocket-version", b"13"), (b"sec-websocket-protocol", b"chat")],
        "2",
        scheme=b"https",
        authority=b"example.com",
        protocol=b"websocket",
    )
    offer = read_offer(event)
    assert isinstance(offer, Offer) and offer.key == b""
    assert acceptance(offer, "chat", None, []) == [(b"sec-websocket-protocol", b"chat")]
