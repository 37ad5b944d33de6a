"""``Upgrade: h2c`` (RFC 7540 §3.2): honoured only with --h2c-upgrade, ignored otherwise."""

from __future__ import annotations

from pathlib import Path

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


def test_no_http2_turns_off_prior_knowledge() -> None:
    from tests.serving import exchange

    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    with running(demo_app, http2=False) as server:
        out = exchange(server, preface)
    # Never read as HTTP/2 (no SETTINGS comes back), and "PRI * HTTP/2.0" is no HTTP/1.x
    # request line either: the connection ends without an answer.
    assert out == b""


def test_no_http2_offers_only_http11_over_alpn(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path, ca_path = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    options = {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)}
    with running(demo_app, http2=False, **options) as server:
        result = run_tool(
            "curl", "-sv", "--http2", "--cacert", str(ca_path), f"https://127.0.0.1:{server.port}/"
        )
    assert b"ALPN: server accepted http/1.1" in result.stderr or b"< HTTP/1.1 200" in result.stderr
    assert b"< HTTP/2" not in result.stderr


def test_a_declined_upgrade_still_answers_the_requests_pipelined_behind_it() -> None:
    """The core holds what follows an Upgrade request until its response; declined, the
    pipelined request behind it is parsed and answered in order."""
    with running(demo_app) as server:
        out = exchange(
            server,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: chat\r\n\r\n"
            b"GET /missing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    first, _, rest = out.partition(b"HTTP/1.1 404")
    assert first.startswith(b"HTTP/1.1 200 OK") and rest, out


def test_a_cleartext_connection_that_never_speaks_is_closed_when_idle() -> None:
    """While the negotiator waits for the first bytes, the keep-alive timeout applies."""
    import socket
    import time

    with (
        running(demo_app, timeout_keep_alive=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock,
    ):
        started = time.monotonic()
        assert sock.recv(10) == b""  # closed by the server
        assert time.monotonic() - started < 2.5
