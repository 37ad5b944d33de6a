"""Behind nginx: X-Forwarded-* and RFC 7239 Forwarded from a trusted proxy, over HTTP/1.1
and over h2c (grpc_pass), and the same headers ignored from a peer we do not trust."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.apps import scope_json
from tests.nginx import proxy
from tests.serving import run_tool, running

HTTP = """
proxy_pass http://127.0.0.1:{port};
proxy_set_header X-Forwarded-For "203.0.113.5, $remote_addr";  # as behind a CDN
proxy_set_header X-Forwarded-Proto https;
proxy_set_header X-Forwarded-Host shop.example;
"""
STANDARD = """
proxy_pass http://127.0.0.1:{port};
proxy_set_header Forwarded "for=192.0.2.44;proto=https;host=standard.example";
"""
H2C = """
grpc_pass grpc://127.0.0.1:{port};
grpc_set_header X-Forwarded-For 192.0.2.99;
grpc_set_header X-Forwarded-Proto https;
"""


def through_nginx(tmp_path: Path, location: str, **options: Any) -> dict[str, Any]:
    with (
        running(scope_json, **options) as server,
        proxy(tmp_path, location.format(port=server.port), http2="grpc_pass" in location) as port,
    ):
        version = "--http2-prior-knowledge" if "grpc_pass" in location else "--http1.1"
        result = run_tool(
            "curl", "-sS", version, "-H", "X-Forwarded-For: 6.6.6.6", f"http://127.0.0.1:{port}/"
        )
    assert result.returncode == 0, result.stderr
    scope: dict[str, Any] = json.loads(result.stdout)
    return scope


def host(scope: dict[str, Any]) -> str:
    return next(value for name, value in scope["headers"] if name == "host")


def test_x_forwarded_headers_from_nginx(tmp_path: Path) -> None:
    scope = through_nginx(tmp_path, HTTP)
    # The rightmost address that is not a trusted proxy (127.0.0.1 is one) is the client.
    assert scope["client"] == ["203.0.113.5", 0]
    assert scope["scheme"] == "https" and host(scope) == "shop.example"


def test_rfc7239_forwarded_from_nginx(tmp_path: Path) -> None:
    scope = through_nginx(tmp_path, STANDARD)
    assert scope["client"] == ["192.0.2.44", 0]
    assert scope["scheme"] == "https" and host(scope) == "standard.example"


def test_h2c_from_a_trusted_proxy(tmp_path: Path) -> None:
    scope = through_nginx(tmp_path, H2C)
    assert scope["http_version"] == "2"  # nginx spoke h2c to us
    assert scope["client"] == ["192.0.2.99", 0] and scope["scheme"] == "https"


@pytest.mark.parametrize("location", [HTTP, STANDARD, H2C], ids=["x-forwarded", "rfc7239", "h2c"])
def test_an_untrusted_proxy_is_not_believed(tmp_path: Path, location: str) -> None:
    scope = through_nginx(tmp_path, location, forwarded_allow_ips="10.9.9.9")
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"
    assert host(scope).startswith("127.0.0.1")
