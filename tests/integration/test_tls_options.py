"""--ssl-cert-reqs and --ssl-ciphers on a real TLS listener, with Python's ssl as the client."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trustme

from caboose.config import Config
from caboose.errors import ConfigError
from caboose.transport.tls import server_context
from tests.apps import hello
from tests.serving import running


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def server_files(ca: trustme.CA, folder: Path) -> dict[str, str]:
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    issued.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return {
        "ssl_certfile": str(folder / "cert.pem"),
        "ssl_keyfile": str(folder / "key.pem"),
        "ssl_ca_certs": str(folder / "ca.pem"),
    }


def status_line(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(65536).split(b"\r\n", 1)[0]


def client_context(ca: trustme.CA, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if with_certificate:
        ca.issue_cert("client@example.test").configure_cert(context)
    return context


def test_required_client_certificates_turn_away_a_client_without_one(
    authority: trustme.CA, tmp_path: Path
) -> None:
    with running(hello, **server_files(authority, tmp_path), ssl_cert_reqs=2) as server:
        assert status_line(server.port, client_context(authority, with_certificate=True)) == (
            b"HTTP/1.1 200 OK"
        )
        # TLS 1.3 sends the server's refusal after the client's side of the handshake: it
        # surfaces at the first read, as an alert or a closed connection, never an answer.
        try:
            line = status_line(server.port, client_context(authority, with_certificate=False))
        except (ssl.SSLError, ConnectionError):
            line = b""
        assert line == b""


def test_by_default_ca_certs_ask_for_a_certificate_but_do_not_require_one(
    authority: trustme.CA, tmp_path: Path
) -> None:
    files = server_files(authority, tmp_path)
    assert server_context(Config(**files)).verify_mode == ssl.CERT_OPTIONAL  # type: ignore[union-attr]
    with running(hello, **files) as server:
        context = client_context(authority, with_certificate=False)
        assert status_line(server.port, context) == b"HTTP/1.1 200 OK"


def test_a_cipher_list_narrows_what_tls_12_negotiates(
    authority: trustme.CA, tmp_path: Path
) -> None:
    files = server_files(authority, tmp_path)
    with running(hello, **files, ssl_ciphers="ECDHE+CHACHA20") as server:
        context = client_context(authority, with_certificate=False)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            cipher = sock.cipher()
    assert cipher is not None and "CHACHA20" in cipher[0]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ssl_cert_reqs": 3}, "--ssl-cert-reqs must be 0, 1 or 2"),
        ({"ssl_cert_reqs": 2, "ssl_ca_certs": None}, "--ssl-cert-reqs 1 or 2 needs --ssl-ca-certs"),
        ({"ssl_ciphers": "NO-SUCH-CIPHER"}, "--ssl-ciphers: no cipher matches"),
    ],
)
def test_bad_tls_options_name_themselves(
    authority: trustme.CA, tmp_path: Path, options: dict[str, object], named: str
) -> None:
    files: dict[str, object] = {**server_files(authority, tmp_path), **options}
    with pytest.raises(ConfigError, match=named):
        server_context(Config(**files))  # type: ignore[arg-type]
