"""``Upgrade: h2c`` (RFC 7540 §3.2): honoured only with --h2c-upgrade, ignored otherwise."""

from __future__ import annotations

from caboose.demo import app as demo_app
from tests.serving import exchange, run_tool, running, url


def test_curl_upgrades_when_enabled() -> None:
    with running(demo_app, h2c_upgrade=True) as server:
        result = run_tool("curl", "-sv", "--http2", "-H", "TE: trailers", url(server, "/trailers"))
    assert b"< HTTP/1.1 101 Switching Protocols" in result.stderr
    assert b"< HTTP/2 200" in result.stderr
    assert b"< content-digest: sha-256=:" in result.stderr  # trailers on stream 1
    assert result.stdout.startswith(b"caboose streams this body")


def test_upgrade_is_ignored_by_default() -> None:
    with running(demo_app) as server:
        result = run_tool("curl", "-sv", "--http2", url(server, "/trailers"))
    assert b"101" not in result.stderr and b"< HTTP/1.1 200 OK" in result.stderr


def test_upgrade_without_http2_settings_stays_http1() -> None:
    with running(demo_app, h2c_upgrade=True) as server:
        out = exchange(
            server,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Connection: close\r\n\r\n",
        )
    assert out.startswith(b"HTTP/1.1 200 OK")
