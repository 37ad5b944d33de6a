"""ASGI extensions over both protocols: early hints (103), pathsend, tls."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import trustme

from tests.serving import exchange, run_tool, running, url

LINK = b"</style.css>; rel=preload; as=style"


async def hinting(scope: Any, receive: Any, send: Any) -> None:
    assert "http.response.early_hint" in scope["extensions"]
    await send({"type": "http.response.early_hint", "links": [LINK]})
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"page"})


def test_early_hints_over_http1() -> None:
    with running(hinting) as server:
        out = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    hint, _, final = out.partition(b"\r\n\r\n")
    assert hint == b"HTTP/1.1 103 Early Hints\r\nlink: " + LINK
    assert final.startswith(b"HTTP/1.1 200 OK") and final.endswith(b"page")


def test_early_hints_skipped_for_http10() -> None:
    with running(hinting) as server:
        out = exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"103" not in out.split(b"\r\n")[0]


def test_early_hints_over_http2_with_curl() -> None:
    with running(hinting) as server:
        result = run_tool("curl", "-sv", "--http2-prior-knowledge", url(server))
    assert b"< HTTP/2 103" in result.stderr and b"< link: " + LINK in result.stderr
    assert b"< HTTP/2 200" in result.stderr and result.stdout == b"page"


def pathsend_app(path: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.pathsend", "path": path})

    return app


def test_pathsend_over_both_protocols(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 6000  # 1.5 MB: several chunks
    target = tmp_path / "file.bin"
    target.write_bytes(payload)
    with running(pathsend_app(str(target))) as server:
        response = httpx.get(url(server))
        h2 = run_tool("curl", "-s", "--http2-prior-knowledge", url(server))
    assert response.content == payload
    assert response.headers["content-length"] == str(len(payload))
    assert h2.stdout == payload


def test_pathsend_with_a_relative_path_is_a_500() -> None:
    with running(pathsend_app("relative/file.bin")) as server:
        assert httpx.get(url(server)).status_code == 500


def test_tls_extension_in_scope(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope["extensions"]["tls"], scheme=scope["scheme"])
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    context = ssl.create_default_context()
    ca.configure_trust(context)
    with running(app, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path)) as server:
        httpx.get(f"https://127.0.0.1:{server.port}/", verify=context)
    assert seen["scheme"] == "https" and seen["tls_version"] in (0x0303, 0x0304)
    assert seen["cipher_suite"] and json.dumps(seen)
