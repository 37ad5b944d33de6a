"""Every exchange is logged once, with how it ended, whether or not its response completed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.h2peer import H2Peer, settle
from tests.serving import running


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def about(self, path: str) -> list[str]:
        return [line for line in self.lines if f" {path} " in line]


@pytest.fixture
def access() -> Iterator[Lines]:
    logger = logging.getLogger("caboose.access")
    handler = Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def app(scope: Any, receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/fail-before":
        raise RuntimeError("before the response")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if path == "/ok":
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    if path == "/fail-midway":
        raise RuntimeError("midway")
    while True:  # /endless: until the client leaves
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"more", "more_body": True})


def h1_get(port: int, path: str, *, leave_after: bytes | None = None) -> bytes:
    """GET ``path``; read the whole response (Connection: close), or leave once
    ``leave_after`` has arrived."""
    close = b"connection: close\r\n" if leave_after is None else b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), close))
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
                if leave_after is not None and leave_after in data:
                    break
        return data


def logged(access: Lines, path: str) -> str:
    assert settle(lambda: bool(access.about(path)), 5), f"{path} was never logged"
    lines = access.about(path)
    assert len(lines) == 1, lines
    return lines[0]


def test_http1_outcomes(access: Lines) -> None:
    with running(app, access_log=True, cancel_grace=0.2) as server:
        h1_get(server.port, "/ok")
        h1_get(server.port, "/fail-before")
        h1_get(server.port, "/fail-midway", leave_after=b"first")
        h1_get(server.port, "/endless", leave_after=b"more")
        assert logged(access, "/ok").endswith('"GET /ok HTTP/1.1" 200 completed')
        assert logged(access, "/fail-before").endswith(" 500 app error")
        assert logged(access, "/fail-midway").endswith(" 200 app error")
        assert logged(access, "/endless").endswith(" 200 client disconnected")


def test_http2_outcomes(access: Lines) -> None:
    with running(app, access_log=True, cancel_grace=0.2) as server:
        with H2Peer(server.port) as peer:
            assert peer.get("/ok").status == 200
            assert peer.get("/fail-before").status == 500
            failed = peer.request("/fail-midway")
            log = peer.wait(failed)
            assert log.reset is not None
            endless = peer.request("/endless")
            assert peer.pump(lambda: len(peer.stream(endless).data) > 8)
            peer.reset(endless)
            assert logged(access, "/endless").endswith('"GET /endless HTTP/2" 200 reset')
            left = peer.request("/endless")
            assert peer.pump(lambda: len(peer.stream(left).data) > 8)
        assert logged(access, "/ok").endswith('"GET /ok HTTP/2" 200 completed')
        assert logged(access, "/fail-before").endswith(" 500 app error")
        assert logged(access, "/fail-midway").endswith(" 200 app error")
        assert settle(lambda: len(access.about("/endless")) == 2, 5), access.lines
        assert access.about("/endless")[1].endswith(" 200 client disconnected")


def test_a_refused_request_is_logged_as_refused(access: Lines) -> None:
    with (
        running(app, access_log=True, limit_concurrency=1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5),  # fills the server
    ):
        time.sleep(0.3)  # the server has counted that connection
        assert b" 503 " in h1_get(server.port, "/ok", leave_after=b"Unavailable")
        assert logged(access, "/ok").endswith(" 503 refused")
