"""Our client against servers we did not write: nghttpd (nghttp2's server) over h2c and TLS,
with trailers, padding and uploads, and nginx over TLS (HTTP/2 and HTTP/1.1). Each runs on
127.0.0.1 from a private folder and is stopped by the PID we started. ``caboose-get -v``
shows nghttpd's trailers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from caboose.client import Client, CloseReason
from tests.client.h2server import run
from tests.nginx import wait_for_port
from tests.ports import on_a_free_port
from tests.serving import ROOT, tool
from tests.tls import TestCertificate, issue_certificate

PAGE = b"<h1>caboose</h1>\n" * 4096  # 69,632 bytes: more than one window of 65,535


def started(
    command: Callable[[int], list[str]], log: Path
) -> contextlib.AbstractContextManager[int]:
    """The server ``command(port)`` runs, on a free port, until the block ends."""
    return on_a_free_port(lambda port: _started(command(port), port, log))


@contextlib.contextmanager
def _started(args: list[str], port: int, log: Path) -> Iterator[int]:
    with log.open("wb") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def nghttpd(folder: Path, cert: TestCertificate | None, *extra: str) -> Iterator[int]:
    htdocs = folder / "htdocs"
    htdocs.mkdir(exist_ok=True)
    (htdocs / "page.html").write_bytes(PAGE)
    keys = [str(cert.key), str(cert.cert)] if cert else ["--no-tls"]

    def command(port: int) -> list[str]:
        return [tool("nghttpd"), "-a", "127.0.0.1", "-d", str(htdocs), *extra, str(port), *keys]

    with started(command, folder / "nghttpd.log") as port:
        yield port


@pytest.fixture(params=["h2c", "tls"])
def nghttpd_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    cert = issue_certificate(tmp_path) if request.param == "tls" else None
    extra = ["--trailer", "x-checksum: 9f86d081", "--trailer", "grpc-status: 0"]
    extra += ["--echo-upload", "--padding", "64"]
    with nghttpd(tmp_path, cert, *extra) as port:
        if cert is None:
            yield f"http://127.0.0.1:{port}", {"http2_prior_knowledge": True}
        else:
            yield f"https://127.0.0.1:{port}", {"verify": str(cert.ca)}


def test_nghttpd_trailers_padding_and_upload(nghttpd_target: tuple[str, dict]) -> None:
    base, options = nghttpd_target

    async def scenario() -> None:
        async with Client(timeout=10, **options) as client:
            page = await client.get(base + "/page.html")
            upload = await client.request("POST", base + "/echo", content=b"u" * 200_000)
        assert page.http_version == "HTTP/2" and page.status == 200
        assert page.content == PAGE  # padded frames: padding credited, not delivered
        assert page.trailers["x-checksum"] == "9f86d081"
        assert page.trailers["grpc-status"] == "0"
        assert page.close_reason is CloseReason.ENDED
        assert upload.content == b"u" * 200_000

    run(scenario())


def test_nghttpd_max_concurrent_streams(tmp_path: Path) -> None:
    """nghttpd announces 100 streams: 300 requests at once all complete on one connection."""

    async def scenario(base: str) -> None:
        import asyncio

        async with Client(timeout=10, http2_prior_knowledge=True) as client:
            pages = await asyncio.gather(*(client.get(base + "/page.html") for _ in range(300)))
            assert {page.content == PAGE for page in pages} == {True}
            assert len(client._pool._drivers) == 1

    with nghttpd(tmp_path, None) as port:
        run(scenario(f"http://127.0.0.1:{port}"))


def test_caboose_get_shows_nghttpd_trailers(tmp_path: Path) -> None:
    extra = ["--trailer", "x-checksum: 9f86d081"]
    with nghttpd(tmp_path, None, *extra) as port:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "caboose.client.cli",
                "-v",
                "--prior-knowledge",
                f"http://127.0.0.1:{port}/page.html",
            ],
            capture_output=True,
            timeout=30,
            cwd=ROOT,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == PAGE
    lines = result.stderr.decode().splitlines()
    assert "< HTTP/2 200" in lines
    assert lines.index("< (trailers)") < lines.index("< x-checksum: 9f86d081")
    assert lines[-1] == "* stream 1 closed: ended"


NGINX = """
daemon off;
user root;  # the worker reads the test's private folder
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
        location / {{
            chunked_transfer_encoding on;
            add_trailer x-served-by nginx;
        }}
    }}
}}
"""


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http1.1"])
def test_nginx_over_tls(tmp_path: Path, http2: bool) -> None:
    cert = issue_certificate(tmp_path)
    (tmp_path / "tmp").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    config = tmp_path / "nginx.conf"

    def command(port: int) -> list[str]:
        config.write_text(
            NGINX.format(prefix=tmp_path, port=port, cert=cert.cert, key=cert.key, root=root)
        )
        errors = str(tmp_path / "e.log")
        return [tool("nginx"), "-p", str(tmp_path), "-c", str(config), "-e", errors]

    async def scenario(port: int) -> None:
        async with Client(timeout=10, verify=str(cert.ca), http2=http2) as client:
            for _ in range(3):
                page = await client.get(f"https://localhost:{port}/page.html")
                assert page.content == PAGE
            missing = await client.get(f"https://localhost:{port}/nope")
            assert missing.status == 404
            assert len(client._pool._drivers) == 1  # kept alive (or multiplexed)
        assert page.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        if http2:  # nginx sends trailers on HTTP/2 and on chunked HTTP/1.1 responses only
            assert page.trailers["x-served-by"] == "nginx"

    with started(command, tmp_path / "nginx.out") as port:
        run(scenario(port))
