"""Proxy headers without sockets: RFC 7239 Forwarded, X-Forwarded-*, and whom to believe."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from caboose.asgi.proxy import apply_proxy_headers, parse_forwarded

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


def scope_after(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": ("10.0.0.2", 5000),
        "headers": [(b"host", b"internal:8000"), *headers],
    }
    apply_proxy_headers(scope, scope["headers"], PROXIES)
    return scope


def host_of(scope: dict[str, Any]) -> bytes:
    (host,) = [value for name, value in scope["headers"] if name == b"host"]
    return host


def test_rfc7239_examples_parse() -> None:
    # RFC 7239 §4 and §7.1's examples.
    assert parse_forwarded('for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded('For="[2001:db8:cafe::17]:4711"') == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert parse_forwarded("for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded("for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]
    assert parse_forwarded('for="a;b,c\\"d";host=x') == [{"for": 'a;b,c"d', "host": "x"}]


def test_a_malformed_element_is_skipped() -> None:
    assert parse_forwarded("for=1.2.3.4;nonsense, for=5.6.7.8") == [{"for": "5.6.7.8"}]


def test_forwarded_sets_client_scheme_and_host() -> None:
    scope = scope_after((b"forwarded", b'for="[2001:db8::1]:4711";proto=https;host=example.com'))
    assert scope["client"] == ("2001:db8::1", 4711)
    assert scope["scheme"] == "https"
    assert host_of(scope) == b"example.com"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    # client -> 10.1.1.1 (wrote the first hop) -> 10.0.0.2 (our peer, wrote the second).
    forwarded = b"for=6.6.6.6;host=spoofed, for=192.0.2.7;proto=https;host=shop.example, "
    forwarded += b"for=10.1.1.1;proto=http;host=internal"
    scope = scope_after((b"forwarded", forwarded))
    assert scope["client"] == ("192.0.2.7", 0)  # not what the client itself claimed
    assert scope["scheme"] == "https" and host_of(scope) == b"shop.example"


def test_forwarded_wins_over_x_forwarded() -> None:
    scope = scope_after(
        (b"x-forwarded-for", b"203.0.113.9"),
        (b"forwarded", b"for=192.0.2.1"),
    )
    assert scope["client"] == ("192.0.2.1", 0)


def test_x_forwarded_for_proto_and_host() -> None:
    scope = scope_after(
        (b"x-forwarded-for", b"1.1.1.1, 192.0.2.5"),
        (b"x-forwarded-for", b"10.3.3.3"),  # a second field line continues the list
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"api.example"),
    )
    assert scope["client"] == ("192.0.2.5", 0)
    assert scope["scheme"] == "https" and host_of(scope) == b"api.example"


@pytest.mark.parametrize(("proto", "scheme"), [(b"https", "wss"), (b"http", "ws"), (b"wss", "wss")])
def test_a_websocket_gets_a_websocket_scheme(proto: bytes, scheme: str) -> None:
    assert scope_after((b"x-forwarded-proto", proto), kind="websocket")["scheme"] == scheme


def test_an_unknown_scheme_is_ignored() -> None:
    assert scope_after((b"x-forwarded-proto", b"gopher"))["scheme"] == "http"


def test_unknown_and_obfuscated_nodes_are_clients_with_port_zero() -> None:
    assert scope_after((b"forwarded", b"for=unknown"))["client"] == ("unknown", 0)
    assert scope_after((b"forwarded", b'for="_hidden:_port"'))["client"] == ("_hidden", 0)
