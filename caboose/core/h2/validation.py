"""HTTP/2 field-section rules (RFC 9113 §8.1-§8.3): check received heads, prepare sent ones.

Received sections that break a rule are *malformed* (§8.1.1): the ``check_*`` functions raise
``RemoteProtocolError`` with the stream's id and PROTOCOL_ERROR, which the connection turns
into RST_STREAM. Sections we are asked to send are checked by ``outgoing_*`` and refused with
``LocalProtocolError``.
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

from caboose.core.events import AppHeaders
from caboose.core.headers import CONNECTION_SPECIFIC
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

Field = tuple[bytes, bytes]
# method, scheme, authority, path, protocol, regular fields, content-length (-1: none),
# TE: trailers, Expect: 100-continue
RequestHead = tuple[bytes, bytes, bytes, bytes, bytes, list[Field], int, bool, bool]

# §8.2.1 forbids 0x00-0x20, A-Z and 0x7f-0xff in names and a colon outside pseudo-headers;
# we also require an RFC 9110 token (§5.1), as §8.2.1 allows, so names are safe to re-emit.
_BAD_NAME: Final = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9a-z]")
# §8.2.1: no NUL, CR or LF anywhere; no SP or HTAB at either end (see _bad_value).
_CTL: Final = re.compile(rb"[\x00\r\n]")
_WHITESPACE: Final = (0x20, 0x09)
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_PATH: Final = re.compile(rb"[\x00-\x20\x7f]")
_SCHEME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_DIGITS: Final = re.compile(rb"[0-9]+\Z")

# Fields that need more than a syntax check: framing, connection-specific, merged.
_SPECIAL: Final = frozenset(
    {*CONNECTION_SPECIFIC, b"te", b"content-length", b"cookie", b"host", b"expect"}
)
_HTTP_SCHEMES: Final = frozenset({b"http", b"https"})

# Fields already found syntactically valid; pure, so shared by every connection. Repeated
# heads (the common case) then cost one set lookup per field instead of two regex scans.
_VALID_IN: set[Field] = set()
_VALID_PSEUDO: set[Field] = set()
_VALID_OUT: set[Field] = set()
_CACHE_LIMIT: Final = 4096


def _bad_value(value: bytes) -> bool:
    """§8.2.1: NUL, CR or LF anywhere, or SP / HTAB first or last."""
    if _CTL.search(value) is not None:
        return True
    return bool(value) and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE)


def malformed(stream_id: int, message: str) -> NoReturn:
    """§8.1.1: a malformed message is a stream error of type PROTOCOL_ERROR."""
    raise RemoteProtocolError(message, code=ErrorCode.PROTOCOL_ERROR, stream_id=stream_id)


def _check_field(field: Field, stream_id: int) -> None:
    name, value = field
    if not name or _BAD_NAME.search(name):
        malformed(stream_id, f"invalid field name {name!r} (§8.2.1)")
    if _bad_value(value):
        malformed(stream_id, f"invalid value for field {name!r} (§8.2.1)")
    if len(_VALID_IN) >= _CACHE_LIMIT:
        _VALID_IN.clear()
    _VALID_IN.add(field)


_PSEUDO_SYNTAX: Final = {b":method": _TOKEN, b":scheme": _SCHEME}


def _check_pseudo(field: Field, stream_id: int) -> None:
    """The syntax of one pseudo-header's value (§8.2.1, §8.3.1); cached once valid."""
    name, value = field
    if not value or _bad_value(value):
        malformed(stream_id, f"invalid value for {name.decode('latin-1')} (§8.2.1, §8.3)")
    syntax = _PSEUDO_SYNTAX.get(name)
    if syntax is not None and not syntax.match(value):
        malformed(stream_id, f"invalid {name.decode('latin-1')} {value!r} (§8.3.1)")
    if name == b":path" and _BAD_PATH.search(value):
        malformed(stream_id, "whitespace or control character in :path")
    if len(_VALID_PSEUDO) >= _CACHE_LIMIT:
        _VALID_PSEUDO.clear()
    _VALID_PSEUDO.add(field)


def _content_length(value: bytes, previous: int, stream_id: int) -> int:
    """§8.1.1 with RFC 9110 §8.6: one decimal value, or a list of identical ones."""
    length = previous
    for element in value.split(b","):
        element = element.strip(b" \t")
        if not _DIGITS.match(element):
            malformed(stream_id, f"invalid content-length {value!r}")
        number = int(element)
        if length >= 0 and number != length:
            malformed(stream_id, "conflicting content-length values")
        length = number
    return length


# (regular fields, content-length or -1, Host value or None, TE: trailers, 100-continue)
Regular = tuple[list[Field], int, bytes | None, bool, bool]


def _regular(fields: list[Field], stream_id: int, *, request: bool) -> Regular:
    """Check the regular fields of a section (§8.2); a pseudo-header among them is malformed."""
    out: list[Field] = []
    valid = _VALID_IN
    length = -1
    host = None
    trailers = expect = False
    cookies: list[bytes] | None = None
    for field in fields:
        name = field[0]
        if field not in valid:
            if name[:1] == b":":
                malformed(stream_id, f"pseudo-header {name!r} after regular fields (§8.3)")
            _check_field(field, stream_id)
        if name in _SPECIAL:
            if name == b"cookie":
                # §8.2.3: crumbs may arrive as separate fields; they are joined into one.
                if cookies is not None:
                    cookies.append(field[1])
                    continue
                cookies = [field[1]]
            elif name == b"content-length":
                length = _content_length(field[1], length, stream_id)
            elif name == b"host":
                host = field[1]
            elif name == b"expect":
                expect = expect or field[1].lower() == b"100-continue"  # RFC 9110 §10.1.1
            else:
                _check_connection_field(field, stream_id, request=request)
                trailers = True  # §8.2.2: a TE that passed is exactly "trailers"
        out.append(field)
    if cookies is not None and len(cookies) > 1:
        joined = (b"cookie", b"; ".join(cookies))
        out = [joined if f[0] == b"cookie" else f for f in out]
    return out, length, host, trailers, expect


def _check_connection_field(field: Field, stream_id: int, *, request: bool) -> None:
    # §8.2.2: connection-specific fields are malformed; TE only in requests, as "trailers".
    name, value = field
    if name != b"te":
        malformed(stream_id, f"connection-specific field {name!r} (§8.2.2)")
    if not request or value.lower() != b"trailers":
        malformed(stream_id, "TE other than 'trailers' (§8.2.2)")


def check_request(fields: list[Field], stream_id: int, *, extended_connect: bool) -> RequestHead:
    """§8.3.1 request pseudo-headers then regular fields; CONNECT per §8.5, RFC 8441 §4."""
    method = scheme = authority = path = protocol = None
    start = 0
    valid = _VALID_PSEUDO
    for field in fields:
        name, value = field
        if name[:1] != b":":
            break
        start += 1
        if field not in valid:
            _check_pseudo(field, stream_id)
        if name == b":method" and method is None:
            method = value
        elif name == b":scheme" and scheme is None:
            scheme = value
        elif name == b":path" and path is None:
            path = value
        elif name == b":authority" and authority is None:
            authority = value
        elif name == b":protocol" and protocol is None and extended_connect:
            protocol = value
        else:
            malformed(stream_id, f"unknown, duplicate or misplaced pseudo-header {name!r}")
    regular, length, host, trailers, expect = _regular(fields[start:], stream_id, request=True)
    if method is None:
        malformed(stream_id, "missing :method (§8.3.1)")
    if method == b"CONNECT" and protocol is None:
        # §8.5: CONNECT carries only :method and :authority.
        if scheme is not None or path is not None or authority is None:
            malformed(stream_id, "CONNECT needs :authority and no :scheme or :path (§8.5)")
    else:
        if protocol is not None and (method != b"CONNECT" or authority is None):
            malformed(
                stream_id, ":protocol outside an extended CONNECT with :authority (RFC 8441 §4)"
            )
        _check_target(method, scheme, path, stream_id)
    if authority is None:
        authority = b""
    elif b"@" in authority or (host is not None and host != authority):
        # §8.3.1: no userinfo; a server SHOULD refuse a Host that differs from :authority.
        malformed(stream_id, ":authority with userinfo, or a different Host (§8.3.1)")
    return (
        method,
        scheme or b"",
        authority,
        path or b"",
        protocol or b"",
        regular,
        length,
        trailers,
        expect,
    )


def _check_target(method: bytes, scheme: bytes | None, path: bytes | None, stream_id: int) -> None:
    if scheme is None or path is None:
        malformed(stream_id, "missing :scheme or :path (§8.3.1)")
    if scheme in _HTTP_SCHEMES and path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        # §8.3.1: "/" for an empty path; "*" only for OPTIONS.
        malformed(stream_id, f"invalid :path {path!r} for an {scheme.decode()} URI (§8.3.1)")


def check_response(fields: list[Field], stream_id: int) -> tuple[int, list[Field], int]:
    """§8.3.2: exactly one :status of three digits, then regular fields."""
    status = -1
    start = 0
    for name, value in fields:
        if name[:1] != b":":
            break
        start += 1
        if name != b":status" or status >= 0:
            malformed(stream_id, f"unknown or duplicate pseudo-header {name!r} (§8.3.2)")
        if len(value) != 3 or not _DIGITS.match(value) or value[0] == 0x30:
            malformed(stream_id, f"invalid :status {value!r}")
        status = int(value)
    if status < 0:
        malformed(stream_id, "response without :status (§8.3.2)")
    if status == 101:
        malformed(stream_id, "101 Switching Protocols is not allowed in HTTP/2 (§8.6)")
    regular, length = _regular(fields[start:], stream_id, request=False)[:2]
    return status, regular, length


def check_trailers(fields: list[Field], stream_id: int) -> list[Field]:
    """§8.1: a trailer section carries no pseudo-headers (§8.3) and obeys §8.2."""
    return _regular(fields, stream_id, request=False)[0]


# --- sending ---------------------------------------------------------------------------------


def outgoing_fields(headers: AppHeaders) -> list[Field]:
    """Regular fields to send: validated, names lower-cased (§8.2), and connection-specific
    fields dropped (§8.2.2: an application written for HTTP/1.1 may still set them).
    """
    out: list[Field] = []
    valid = _VALID_OUT
    for field in headers:
        if type(field) is not tuple:
            field = (field[0], field[1])
        if field in valid:
            out.append(field)
            continue
        name, value = field
        if type(name) is not bytes or type(value) is not bytes:
            raise LocalProtocolError(f"header names and values must be bytes: {field!r}")
        lower = name.lower()
        if not _TOKEN.match(lower) or _bad_value(value):
            raise LocalProtocolError(f"invalid header field {name!r}: {value!r}")
        if lower in CONNECTION_SPECIFIC or (lower == b"te" and value.lower() != b"trailers"):
            continue
        field = (lower, value)
        if lower == name:
            if len(valid) >= _CACHE_LIMIT:
                valid.clear()
            valid.add(field)
        out.append(field)
    return out


def outgoing_trailers(headers: AppHeaders) -> list[Field]:
    """A trailer section to send: regular fields only (§8.1)."""
    fields = list(headers)
    for field in fields:
        if field[0][:1] == b":":
            raise LocalProtocolError(f"pseudo-header {field[0]!r} in a trailer section (§8.1)")
    return outgoing_fields(fields)


def split_pseudo(headers: AppHeaders) -> tuple[dict[bytes, bytes], list[Field]]:
    """Split a head given with pseudo-headers first into (pseudo-headers, regular fields)."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[Field] = []
    for field in headers:
        name = field[0]
        if name[:1] == b":":
            if regular or name in pseudo:
                raise LocalProtocolError(f"misplaced or duplicate pseudo-header {name!r} (§8.3)")
            pseudo[name] = field[1]
        else:
            regular.append((name, field[1]))
    return pseudo, regular


_REQUEST_PSEUDO: Final = (b":method", b":scheme", b":authority", b":path", b":protocol")


def outgoing_request(headers: AppHeaders) -> tuple[list[Field], bytes]:
    """A request head to send (client role): pseudo-headers first (§8.3.1); and its method."""
    pseudo, regular = split_pseudo(headers)
    unknown = set(pseudo) - set(_REQUEST_PSEUDO)
    method = pseudo.get(b":method")
    if unknown or method is None:
        raise LocalProtocolError(f"a request needs :method and no {sorted(unknown)!r} (§8.3.1)")
    if method != b"CONNECT" or b":protocol" in pseudo:
        if b":scheme" not in pseudo or not pseudo.get(b":path"):
            raise LocalProtocolError("a request needs :scheme and a non-empty :path (§8.3.1)")
    elif b":authority" not in pseudo or b":scheme" in pseudo or b":path" in pseudo:
        raise LocalProtocolError("CONNECT takes :authority and no :scheme or :path (§8.5)")
    fields = [(name, pseudo[name]) for name in _REQUEST_PSEUDO if name in pseudo]
    for field in fields:
        if _bad_value(field[1]):
            raise LocalProtocolError(f"invalid value for {field[0]!r}")
    return fields + outgoing_fields(regular), method
