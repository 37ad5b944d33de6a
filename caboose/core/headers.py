"""Header field rules shared by every protocol: validation, TE tokens, forbidden trailers."""

from __future__ import annotations

import re

from caboose.core.events import AppHeaders
from caboose.errors import LocalProtocolError

# RFC 9110 §5.1: field-name = token; tchar excludes separators, controls and spaces.
TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: CR, LF and NUL are never valid in a field value (splitting, smuggling).
BAD_VALUE_RE = re.compile(rb"[\x00\r\n]")

# RFC 9110 §6.5.1: fields a sender must not put in trailers, because a recipient needs them
# before the content (framing, routing, request modifiers, authentication, control data).
FORBIDDEN_TRAILERS = frozenset(
    {
        b"authorization",
        b"cache-control",
        b"connection",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"expect",
        b"host",
        b"keep-alive",
        b"max-forwards",
        b"pragma",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"range",
        b"set-cookie",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"www-authenticate",
    }
)

# RFC 9113 §8.2.2: connection-specific fields that HTTP/2 forbids; HTTP/1.1 hop-by-hop set.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def validate_field(name: bytes, value: bytes) -> None:
    """Refuse a field an application asked us to send that would corrupt the message."""
    if not TOKEN_RE.match(name):
        raise LocalProtocolError(f"invalid header name {name!r}")
    if BAD_VALUE_RE.search(value):
        raise LocalProtocolError(f"invalid header value for {name.decode('latin-1')!r}")


def validate_fields(headers: AppHeaders) -> None:
    for name, value in headers:
        validate_field(name, value)


def validate_trailers(headers: AppHeaders) -> None:
    """Refuse trailer fields that RFC 9110 §6.5.1 forbids, and pseudo-headers."""
    for name, value in headers:
        if name.startswith(b":"):
            raise LocalProtocolError(f"pseudo-header {name!r} is not allowed in trailers")
        validate_field(name, value)
        if name.lower() in FORBIDDEN_TRAILERS:
            raise LocalProtocolError(
                f"{name.decode('latin-1')!r} must not be sent as a trailer (RFC 9110 §6.5.1)"
            )


def has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated list field (e.g. TE, Connection) carries ``token``.

    Elements may carry parameters (``trailers;q=1`` is not allowed for TE trailers, but
    ``gzip;q=0.5`` is), so each element is cut at ``;`` and compared case-insensitively.
    """
    elements = (element.split(b";", 1)[0].strip().lower() for element in value.split(b","))
    return token in elements
