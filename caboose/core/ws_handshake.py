"""The opening handshake of WebSocket, server side, for both HTTP versions (sans-I/O).

RFC 6455 §4.2.1 says what a valid HTTP/1.1 upgrade request carries and §4.2.2 how the server
accepts it; RFC 8441 §4-§5 moves the same exchange into an extended CONNECT on HTTP/2, where
there is no key, no Upgrade and no Connection: the 200 is the acceptance. This module reads a
request head into an ``Offer`` (or a ``Refusal`` with the status it deserves) and writes the
fields of an acceptance. It knows nothing of frames.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from caboose.core.events import Headers, RequestReceived
from caboose.core.headers import has_token

# RFC 6455 §1.3: appended to the client's key before hashing, for Sec-WebSocket-Accept.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = b"13"  # RFC 6455 §4.1: the only version; §4.4 answers others with 426


@dataclass
class Offer:
    """What a valid opening handshake asks for."""

    key: bytes  # Sec-WebSocket-Key (HTTP/1.1 only; b"" on HTTP/2)
    subprotocols: list[str] = field(default_factory=list)  # in the client's order of preference
    extensions: list[bytes] = field(default_factory=list)  # Sec-WebSocket-Extensions values


@dataclass
class Refusal:
    """Why a handshake is invalid and how to answer it (RFC 6455 §4.2.1, §4.4)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=list)

    def response(self) -> tuple[Headers, bytes]:
        """The fields and the plain-text body of the answer, for either HTTP version."""
        body = f"{self.reason}\n".encode()
        return [*self.headers, (b"content-type", b"text/plain; charset=utf-8")], body


def _list_field(headers: Headers, name: bytes) -> list[bytes]:
    """The elements of a comma-separated field that may be repeated (RFC 9110 §5.3)."""
    out: list[bytes] = []
    for field_name, value in headers:
        if field_name == name:
            out += [element.strip() for element in value.split(b",") if element.strip()]
    return out


def _one(headers: Headers, name: bytes) -> list[bytes]:
    return [value.strip() for field_name, value in headers if field_name == name]


def read_offer(event: RequestReceived) -> Offer | Refusal:
    """Check an opening handshake; HTTP/2's extended CONNECT when ``event.protocol`` is set."""
    headers = event.headers
    if event.protocol:  # RFC 8441 §4: :method CONNECT, :protocol websocket, no key
        key = b""
    else:
        if event.method != b"GET" or event.http_version != "1.1":
            return Refusal(400, "a WebSocket handshake is an HTTP/1.1 GET (RFC 6455 §4.2.1)")
        connection = b",".join(_one(headers, b"connection"))
        if not has_token(event.upgrade, b"websocket") or not has_token(connection, b"upgrade"):
            return Refusal(400, "Upgrade: websocket and Connection: Upgrade are required")
        keys = _one(headers, b"sec-websocket-key")
        if len(keys) != 1 or not _valid_key(keys[0]):
            return Refusal(400, "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.2.1)")
        key = keys[0]
    versions = _one(headers, b"sec-websocket-version")
    if versions != [VERSION]:
        # §4.4: say which versions we speak.
        return Refusal(
            426, "unsupported Sec-WebSocket-Version", [(b"sec-websocket-version", VERSION)]
        )
    protocols = [p.decode("latin-1") for p in _list_field(headers, b"sec-websocket-protocol")]
    return Offer(key, protocols, _one(headers, b"sec-websocket-extensions"))


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_token(key: bytes) -> bytes:
    """RFC 6455 §4.2.2: base64 of the SHA-1 of the key and the GUID."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def acceptance(
    offer: Offer, subprotocol: str | None, extensions: bytes | None, extra: Headers
) -> Headers:
    """The fields of the 101 (HTTP/1.1) or the 200 (HTTP/2) that accepts ``offer``.

    ``subprotocol`` must be one the client offered (§4.2.2: the server selects one of them or
    none); ``extensions`` is the negotiated Sec-WebSocket-Extensions value, if any.
    """
    if subprotocol is not None and subprotocol not in offer.subprotocols:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
    headers: Headers = []
    if offer.key:
        headers.append((b"sec-websocket-accept", accept_token(offer.key)))
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    if extensions:
        headers.append((b"sec-websocket-extensions", extensions))
    reserved = {b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions"}
    headers += [(n, v) for n, v in extra if n.lower() not in reserved]
    return headers
