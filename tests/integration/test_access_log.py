"""Every exchange is logged once, with how it ended, whether or not its response completed:
the default line's fields (bytes, duration, HTTP/2 stream id) and --access-log-format, over
HTTP/1.1 and HTTP/2, from real clients (raw sockets, the h2 library, httpx, curl)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from caboose.transport.access import AccessEntry
from tests.h2peer import H2Peer, settle
from tests.serving import run_tool, running, url


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(record.getMessage())

    def about(self, path: str) -> list[str]:
        return [line for line in self.lines if f" {path} " in line or f" {path}?" in line]


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
    if path == "/slow":
        await asyncio.sleep(0.2)
    headers = [(b"content-type", b"text/plain"), (b"x-answer", b"42")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path in ("/ok", "/slow"):
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


# The default line: client - "request line" status bytes duration [stream=N] outcome
LINE = re.compile(
    r'(?P<client>\S+) - "(?P<method>\S+) (?P<target>\S+) (?P<protocol>HTTP/[\d.]+)" '
    r"(?P<status>\d+|-) (?P<bytes>\d+)B (?P<ms>\d+\.\d\d)ms(?: stream=(?P<stream>\d+))? "
    r"(?P<outcome>.+)"
)


def fields(line: str) -> dict[str, str | None]:
    found = LINE.fullmatch(line)
    assert found, line
    return found.groupdict()


def test_http1_outcomes(access: Lines) -> None:
    with running(app, access_log=True, cancel_grace=0.2) as server:
        h1_get(server.port, "/ok")
        h1_get(server.port, "/slow")
        h1_get(server.port, "/fail-before")
        h1_get(server.port, "/fail-midway", leave_after=b"first")
        h1_get(server.port, "/endless", leave_after=b"more")
        ok = fields(logged(access, "/ok"))
        assert ok["client"] is not None and ok["client"].startswith("127.0.0.1:")
        assert (ok["method"], ok["protocol"], ok["status"]) == ("GET", "HTTP/1.1", "200")
        assert (ok["bytes"], ok["stream"], ok["outcome"]) == ("2", None, "completed")
        assert 200 <= float(fields(logged(access, "/slow"))["ms"] or 0) < 2000
        failed = fields(logged(access, "/fail-before"))
        assert (failed["status"], failed["bytes"], failed["outcome"]) == ("500", "22", "app error")
        midway = fields(logged(access, "/fail-midway"))
        assert (midway["status"], midway["bytes"], midway["outcome"]) == ("200", "5", "app error")
        endless = fields(logged(access, "/endless"))
        assert endless["outcome"] == "client disconnected"
        assert int(endless["bytes"] or 0) >= len(b"firstmore")


def test_http2_outcomes(access: Lines) -> None:
    with running(app, access_log=True, cancel_grace=0.2) as server:
        with H2Peer(server.port) as peer:
            ok = peer.request("/ok")
            assert peer.wait(ok).status == 200
            assert peer.get("/fail-before").status == 500
            failed = peer.request("/fail-midway")
            log = peer.wait(failed)
            assert log.reset is not None
            endless = peer.request("/endless")
            assert peer.pump(lambda: len(peer.stream(endless).data) > 8)
            peer.reset(endless)
            reset = fields(logged(access, "/endless"))
            assert (reset["protocol"], reset["status"], reset["outcome"]) == (
                "HTTP/2",
                "200",
                "reset",
            )
            assert reset["stream"] == str(endless)
            left = peer.request("/endless")
            assert peer.pump(lambda: len(peer.stream(left).data) > 8)
        completed = fields(logged(access, "/ok"))
        assert (completed["stream"], completed["bytes"], completed["outcome"]) == (
            str(ok),
            "2",
            "completed",
        )
        assert fields(logged(access, "/fail-before"))["outcome"] == "app error"
        midway = fields(logged(access, "/fail-midway"))
        assert (midway["stream"], midway["outcome"]) == (str(failed), "app error")
        assert settle(lambda: len(access.about("/endless")) == 2, 5), access.lines
        gone = fields(access.about("/endless")[1])
        assert (gone["stream"], gone["outcome"]) == (str(left), "client disconnected")
        assert int(gone["bytes"] or 0) >= len(peer.stream(left).data)


def test_a_refused_request_is_logged_as_refused(access: Lines) -> None:
    with (
        running(app, access_log=True, limit_concurrency=1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5),  # fills the server
    ):
        time.sleep(0.3)  # the server has counted that connection
        assert b" 503 " in h1_get(server.port, "/ok", leave_after=b"Unavailable")
        refused = fields(logged(access, "/ok"))
        assert (refused["status"], refused["bytes"], refused["outcome"]) == ("503", "20", "refused")


FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s | %(m)s %(U)s q=%(q)s %(H)s %(S)s %(st)s '
    "%(B)s %(T)s %(M)s %(D)s %(L)s ua=%(a)s ref=%(f)s in=%({X-Test}i)s out=%({x-answer}o)s "
    "none=%({x-absent}i)s stream=%(stream)s %(outcome)s pid=%(p)s 100%%"
)


@pytest.mark.parametrize("http2", [False, True])
def test_access_log_format_atoms_from_httpx(access: Lines, http2: bool) -> None:
    with (
        running(app, access_log=True, access_log_format=FORMAT) as server,
        httpx.Client(http1=not http2, http2=http2) as client,
    ):
        headers = {"user-agent": "tester/1", "referer": "http://ref/", "x-test": "yes"}
        response = client.get(url(server, "/slow?a=1&b=2"), headers=headers)
        assert response.status_code == 200
        line = logged(access, "/slow")
    protocol = "HTTP/2" if http2 else "HTTP/1.1"
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        rf'"GET /slow\?a=1&b=2 {protocol}" 200 2 \| GET /slow q=a=1&b=2 {protocol} http OK '
        r"2 0 (\d+) (\d+) (0\.\d{6}) ua=tester/1 ref=http://ref/ in=yes out=42 none=- "
        rf"stream={1 if http2 else '-'} completed pid=\d+ 100%",
        line,
    ), line
    millis = int(line.split(" OK 2 0 ")[1].split()[0])
    assert 200 <= millis < 2000


def test_the_user_agent_of_curl_and_a_missing_body(access: Lines) -> None:
    async def empty(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fmt = '"%(r)s" %(s)s %(b)s %(B)s %(a)s'
    with running(empty, access_log=True, access_log_format=fmt) as server:
        result = run_tool("curl", "-s", "--http2-prior-knowledge", url(server, "/none"))
        assert result.returncode == 0
        line = logged(access, "/none")
    assert re.fullmatch(r'"GET /none HTTP/2" 204 - 0 curl/[\d.]+', line), line


def test_the_entry_carries_the_fields_for_json(access: Lines) -> None:
    with running(app, access_log=True) as server:
        with H2Peer(server.port) as peer:
            peer.get("/ok?x=1")
        logged(access, "/ok")
    entry = access.records[-1].args
    assert isinstance(entry, AccessEntry)
    keys = entry.fields()
    assert keys["client"].startswith("127.0.0.1:")
    del keys["client"]
    assert keys.pop("duration_ms") >= 0
    assert keys == {
        "method": "GET",
        "path": "/ok",
        "query": "x=1",
        "protocol": "HTTP/2",
        "scheme": "http",
        "status": 200,
        "bytes": 2,
        "stream": 1,
        "outcome": "completed",
    }


def test_a_logger_not_enabled_for_info_formats_nothing(access: Lines) -> None:
    logging.getLogger("caboose.access").setLevel(logging.WARNING)
    with running(app, access_log=True) as server:
        h1_get(server.port, "/ok")
        h1_get(server.port, "/ok")
    assert access.lines == []
