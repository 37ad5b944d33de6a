"""What a trusted reverse proxy says about the request: RFC 7239 ``Forwarded`` and the
de-facto ``X-Forwarded-For/-Proto/-Host``. Applied only when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from caboose.core.events import Headers

Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None

# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string (RFC 9110 §5.6).
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
_SCHEMES = {"http", "https", "ws", "wss"}
_WEBSOCKET = {"http": "ws", "https": "wss"}


def is_trusted(host: str, networks: Networks) -> bool:
    """Whether ``host`` lies in one of the trusted proxy networks (``None``: trust all)."""
    if networks is None:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def apply_proxy_headers(scope: dict[str, Any], headers: Headers, networks: Networks) -> None:
    """Set the scope's client, scheme and Host from what the proxy forwarded. ``Forwarded``
    (the standard) wins over the X-Forwarded-* fields when both are there."""
    forwarded: list[bytes] = []
    legacy: dict[bytes, bytes] = {}
    for name, value in headers:
        if name == b"forwarded":
            forwarded.append(value)
        elif name in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
            # Repeated fields are one comma-separated list (RFC 9110 §5.3).
            legacy[name] = legacy[name] + b"," + value if name in legacy else value
    if forwarded:
        hop = _origin_hop(parse_forwarded(b",".join(forwarded).decode("latin-1")), networks)
        client, proto, host = hop.get("for"), hop.get("proto"), hop.get("host")
    else:
        hosts = _items(legacy.get(b"x-forwarded-for"))
        client = _rightmost_untrusted(hosts, networks)
        proto = _last(legacy.get(b"x-forwarded-proto"))
        host = _last(legacy.get(b"x-forwarded-host"))
    if client:
        scope["client"] = _node(client)
    if proto and proto.lower() in _SCHEMES:
        scheme = proto.lower()
        scope["scheme"] = _WEBSOCKET.get(scheme, scheme) if scope["type"] == "websocket" else scheme
    if host:
        _set_host(scope, host.encode("latin-1"))


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4: one dict per hop, leftmost (the client's side) first; parameter names
    lower-cased, quoted values unquoted. A malformed element is skipped, not trusted."""
    hops = []
    for element in _split_unquoted(value, ","):
        hop: dict[str, str] = {}
        for pair in _split_unquoted(element, ";"):
            if not pair.strip():
                continue
            match = _PAIR.fullmatch(pair)
            if match is None:
                hop = {}
                break
            name, raw = match.groups()
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            hop[name.lower()] = raw
        if hop:
            hops.append(hop)
    return hops


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _origin_hop(hops: list[dict[str, str]], networks: Networks) -> dict[str, str]:
    """Each proxy appends the hop it saw. From the right, skip those whose ``for`` is itself
    a trusted proxy: the first that is not is the client, and its hop says how the outermost
    trusted proxy was reached. Further left, the client wrote what it liked."""
    for hop in reversed(hops):
        if not is_trusted(_node(hop.get("for", "unknown"))[0], networks):
            return hop
    return hops[0] if hops else {}


def _rightmost_untrusted(hosts: list[str], networks: Networks) -> str | None:
    for host in reversed(hosts):
        if not is_trusted(host, networks):
            return host
    return hosts[0] if hosts else None


def _items(value: bytes | None) -> list[str]:
    if value is None:
        return []
    return [item.strip() for item in value.decode("latin-1").split(",") if item.strip()]


def _last(value: bytes | None) -> str | None:
    """The nearest proxy's word: the last item of a list field."""
    items = _items(value)
    return items[-1] if items else None


def _node(node: str) -> tuple[str, int]:
    """RFC 7239 §6: an IPv4 address, a bracketed IPv6 one, ``unknown`` or an obfuscated
    ``_name``, each with an optional port; (host, port), the port 0 when none was given."""
    host, port = node, ""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest.removeprefix(":")
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    return host, int(port) if port.isdigit() else 0


def _set_host(scope: dict[str, Any], host: bytes) -> None:
    headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
    scope["headers"] = [(b"host", host), *headers]
