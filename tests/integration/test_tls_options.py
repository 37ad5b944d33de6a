"""--ssl-cert-reqs, --ssl-version and --ssl-ciphers, seen from curl and Python's ssl client."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from caboose.errors import ConfigError
from tests.serving import run_tool, running
from tests.tls import issue_certificate


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    tls = scope["extensions"]["tls"]
    body = json.dumps({"client": tls["client_cert_name"], "version": tls["tls_version"]})
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": body.encode()})


def curl(port: int, ca: Path, *args: str) -> Any:
    return run_tool("curl", "-sS", "--cacert", str(ca), *args, f"https://127.0.0.1:{port}/")


def test_required_client_certificates(tmp_path: Path) -> None:
    files = issue_certificate(tmp_path)
    # Clients get their certificates from a CA of their own, which the server trusts.
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    client = client_ca.issue_cert("alice@example.test", common_name="alice")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "alice.pem"))
    options = {"ssl_ca_certs": str(tmp_path / "client-ca.pem"), "ssl_cert_reqs": "required"}
    with running(whoami, **files.server_options(), **options) as server:
        refused = curl(server.port, files.ca)
        alice = curl(server.port, files.ca, "--cert", str(tmp_path / "alice.pem"))
    assert refused.returncode != 0  # the handshake fails without a certificate
    assert alice.returncode == 0, alice.stderr
    assert "commonName=alice" in json.loads(alice.stdout)["client"]


def test_optional_client_certificates_let_anonymous_clients_in(tmp_path: Path) -> None:
    files = issue_certificate(tmp_path)
    options = {"ssl_ca_certs": str(files.ca), "ssl_cert_reqs": "optional"}
    with running(whoami, **files.server_options(), **options) as server:
        anonymous = curl(server.port, files.ca)
    assert anonymous.returncode == 0, anonymous.stderr
    assert json.loads(anonymous.stdout)["client"] is None


def test_ssl_version_sets_the_lowest_version(tmp_path: Path) -> None:
    files = issue_certificate(tmp_path)
    with running(whoami, **files.server_options(), ssl_version="TLSv1.3") as server:
        old = curl(server.port, files.ca, "--tls-max", "1.2")
        new = curl(server.port, files.ca)
    assert old.returncode != 0  # a TLS 1.2 client is turned away
    assert json.loads(new.stdout)["version"] == 0x0304
    with running(whoami, **files.server_options()) as server:  # default: 1.2 is served
        default = curl(server.port, files.ca, "--tls-max", "1.2")
    assert json.loads(default.stdout)["version"] == 0x0303


def negotiated_cipher(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 suites are not configurable
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        cipher = tls.cipher()
    assert cipher is not None
    return cipher[0]


def test_ssl_ciphers_choose_the_tls12_suites(tmp_path: Path) -> None:
    files = issue_certificate(tmp_path)
    with running(whoami, **files.server_options(), ssl_ciphers="ECDHE+CHACHA20") as server:
        assert "CHACHA20" in negotiated_cipher(server.port, files.ca)
    with running(whoami, **files.server_options()) as server:
        assert "GCM" in negotiated_cipher(server.port, files.ca)  # AES-GCM first by default


def test_a_cipher_list_that_matches_nothing_is_a_config_error(tmp_path: Path) -> None:
    from caboose.config import Config
    from caboose.transport.tls import server_context

    files = issue_certificate(tmp_path)
    with pytest.raises(ConfigError, match="--ssl-ciphers: no cipher matches 'NOPE'"):
        server_context(Config(**files.server_options(), ssl_ciphers="NOPE"))
