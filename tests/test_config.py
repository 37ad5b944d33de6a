"""Config defaults and checks that mirror uvicorn's, without a server."""

from __future__ import annotations

import ipaddress

import pytest

from caboose.config import Config
from caboose.errors import ConfigError


def test_proxy_headers_are_trusted_from_loopback_of_both_families_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    trusted = Config().trusted_proxies()
    assert trusted is not None
    for address in ("127.0.0.1", "::1"):
        assert any(ipaddress.ip_address(address) in network for network in trusted)
    assert not any(ipaddress.ip_address("10.0.0.1") in network for network in trusted)


def test_web_concurrency_sets_the_default_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Config().workers == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        Config()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": 0}, "--workers"),
        ({"backlog": 0}, "--backlog"),
        ({"timeout_worker_healthcheck": 0}, "--timeout-worker-healthcheck"),
        ({"limit_max_requests": 0}, "--limit-max-requests"),
        ({"limit_max_requests_jitter": -1}, "--limit-max-requests-jitter"),
    ],
)
def test_bad_worker_options_name_themselves(options: dict[str, int], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config(**options)  # type: ignore[arg-type]


def test_the_backlog_reaches_the_listening_socket() -> None:
    import socket
    import subprocess

    from caboose.transport.listen import bind

    (sock,) = bind(Config(host="127.0.0.1", port=0, backlog=7))
    with sock:
        port = sock.getsockname()[1]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        # ss shows a listening socket's backlog as its Send-Q.
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listing[0] == "LISTEN" and listing[2] == "7", listing


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ssl_cert_reqs": "sometimes"}, "--ssl-cert-reqs must be none, optional or required"),
        ({"ssl_cert_reqs": "required"}, "--ssl-cert-reqs optional/required needs --ssl-ca-certs"),
        ({"ssl_version": "TLSv1.1"}, "--ssl-version must be TLSv1.2 or TLSv1.3"),
        ({"ssl_version": "3"}, "RFC 8996"),
    ],
)
def test_bad_tls_options_name_themselves(options: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config(**options)  # type: ignore[arg-type]


def test_uvicorn_tls_numbers_mean_what_they_meant() -> None:
    assert Config(ssl_version="17").tls_minimum_version == "TLSv1_2"  # uvicorn's default
    assert Config(ssl_version="tlsv1.3").tls_minimum_version == "TLSv1_3"
    assert Config(ssl_ca_certs="ca.pem").client_cert_mode == 1  # optional, as before
    assert Config(ssl_ca_certs="ca.pem", ssl_cert_reqs="2").client_cert_mode == 2
    assert Config().client_cert_mode == 0


def test_header_fields_are_parsed_and_checked() -> None:
    config = Config(headers=("X-Frame-Options: DENY", "Link: </a>; rel=preload, </b>"))
    assert config.extra_headers() == [
        (b"x-frame-options", b"DENY"),
        (b"link", b"</a>; rel=preload, </b>"),
    ]
    with pytest.raises(ConfigError, match="--header must be 'Name: value'"):
        Config(headers=("no colon",))
    with pytest.raises(ConfigError, match="--header must be 'Name: value'"):
        Config(headers=("bad name: x",))
    with pytest.raises(ConfigError, match="--header X-Evil: only visible"):
        Config(headers=("X-Evil: a\r\nSet-Cookie: b",))
