"""HTTP/2 over real sockets, driven by clients we did not write: curl, nghttp, h2load, httpx
and the python-hyper ``h2`` library (tests/h2client.py).

h2c is spoken by prior knowledge on the HTTP/1.1 port; h2 is negotiated by ALPN over TLS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from caboose.demo import CHUNKS
from caboose.demo import app as demo_app
from tests.apps import echo, hello, slow
from tests.h2client import H2Client
from tests.serving import run_tool, running, url
from tests.tls import issue_certificate

DEMO_BODY = b"".join(CHUNKS)
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value, position-dependent


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) files for 127.0.0.1, from a throwaway trustme CA."""
    files = issue_certificate(tmp_path_factory.mktemp("tls"))
    return files.ca, files.cert, files.key


def tls_options(certificate: tuple[Path, Path, Path]) -> dict[str, str]:
    _, cert, key = certificate
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def curl_fields(verbose: bytes) -> list[str]:
    """The response lines curl -v printed (``< ...``), in order: status line, header fields,
    an empty line ending the head, then the trailer fields."""
    text = verbose.decode("latin-1")
    return [line[2:].strip() for line in text.splitlines() if line.startswith("< ")]


def digest_of(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


@dataclass
class Frame:
    """One frame that nghttp -v printed, with the fields it decoded from a HEADERS frame."""

    direction: str  # "send" or "recv"
    kind: str  # "HEADERS", "DATA", ...
    flags: int
    stream_id: int
    fields: list[str] = field(default_factory=list)


FRAME_LINE = re.compile(
    r"\] (send|recv) (\w+) frame <length=\d+, flags=0x([0-9a-f]+), stream_id=(\d+)>"
)
FIELD_LINE = re.compile(r"\] recv \(stream_id=\d+\) (.*)$")


def nghttp_frames(output: bytes) -> list[Frame]:
    """Parse nghttp -v output. nghttp prints the fields of a received HEADERS frame on the
    lines just before the frame's own line, so they are attached to the next HEADERS frame."""
    frames: list[Frame] = []
    pending: list[str] = []
    for line in output.decode("latin-1").splitlines():
        if match := FIELD_LINE.search(line):
            pending.append(match.group(1))
        elif match := FRAME_LINE.search(line):
            direction, kind, flags, stream_id = match.groups()
            frame = Frame(direction, kind, int(flags, 16), int(stream_id))
            if direction == "recv" and kind == "HEADERS":
                frame.fields, pending = pending, []
            frames.append(frame)
    return frames


def received_on_streams(output: bytes) -> list[Frame]:
    """The frames the server sent on request streams (not on stream 0)."""
    return [f for f in nghttp_frames(output) if f.direction == "recv" and f.stream_id != 0]


END_STREAM, END_HEADERS = 0x01, 0x04


# -- curl --------------------------------------------------------------------------------------


def test_curl_h2c_prior_knowledge_shows_trailers_after_the_body() -> None:
    with running(demo_app) as server:
        result = run_tool(
            "curl",
            "-s",
            "--http2-prior-knowledge",
            "-H",
            "TE: trailers",
            "--raw",
            "-v",
            url(server, "/trailers"),
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == DEMO_BODY
    fields = curl_fields(result.stderr)
    assert fields[0] == "HTTP/2 200"
    end_of_head = fields.index("")
    trailer = f"content-digest: {digest_of(DEMO_BODY)}"
    assert trailer in fields and fields.index(trailer) > end_of_head
    assert any(line.startswith("server-timing: app;dur=") for line in fields[end_of_head:])


def test_curl_h2c_without_te_sees_no_trailers() -> None:
    with running(demo_app) as server:
        result = run_tool(
            "curl", "-s", "--http2-prior-knowledge", "--raw", "-v", url(server, "/trailers")
        )
    assert result.returncode == 0, result.stderr
    fields = curl_fields(result.stderr)
    assert fields[0] == "HTTP/2 200" and result.stdout == DEMO_BODY
    assert not any(line.startswith(("content-digest", "server-timing")) for line in fields)


def test_curl_over_tls_negotiates_h2_by_alpn_and_http11_still_works(
    certificate: tuple[Path, Path, Path],
) -> None:
    ca = str(certificate[0])
    with running(demo_app, **tls_options(certificate)) as server:
        target = f"https://127.0.0.1:{server.port}/trailers"
        common = ["-s", "-v", "--raw", "--cacert", ca, "-H", "TE: trailers", target]
        h2 = run_tool("curl", "--http2", *common)
        h1 = run_tool("curl", "--http1.1", *common)
    assert h2.returncode == 0, h2.stderr
    assert b"ALPN: server accepted h2" in h2.stderr
    fields = curl_fields(h2.stderr)
    assert fields[0] == "HTTP/2 200" and h2.stdout == DEMO_BODY
    assert f"content-digest: {digest_of(DEMO_BODY)}" in fields[fields.index("") :]

    assert h1.returncode == 0, h1.stderr
    assert b"ALPN: server accepted http/1.1" in h1.stderr
    assert curl_fields(h1.stderr)[0] == "HTTP/1.1 200 OK"
    assert b"\r\n0\r\ncontent-digest: " + digest_of(DEMO_BODY).encode() in h1.stdout


def test_curl_h2c_head_gets_headers_and_no_data() -> None:
    """RFC 9110 §9.3.2: no content for HEAD; over HTTP/2 a DATA frame here is a stream error
    for the client (RFC 9113 §8.1.1), and curl gives up with PROTOCOL_ERROR."""
    with running(hello) as server:
        result = run_tool("curl", "-s", "-v", "-I", "--http2-prior-knowledge", url(server))
    assert result.returncode == 0, result.stderr.decode()
    fields = curl_fields(result.stderr)
    assert fields[0] == "HTTP/2 200" and "content-length: 13" in fields


# -- nghttp and h2load -------------------------------------------------------------------------


def test_nghttp_sees_trailers_in_a_final_headers_frame() -> None:
    with running(demo_app) as server:
        result = run_tool("nghttp", "-v", "-H", "te: trailers", url(server, "/trailers"))
    assert result.returncode == 0, result.stderr
    frames = received_on_streams(result.stdout)
    head, body, last = frames[0], frames[1:-1], frames[-1]
    assert (head.kind, head.flags) == ("HEADERS", END_HEADERS)
    assert ":status: 200" in head.fields
    assert body and all(f.kind == "DATA" and f.flags == 0 for f in body)
    assert (last.kind, last.flags) == ("HEADERS", END_STREAM | END_HEADERS)
    assert f"content-digest: {digest_of(DEMO_BODY)}" in last.fields
    assert any(line.startswith("server-timing: app;dur=") for line in last.fields)
    assert not any(line.startswith(":") for line in last.fields)


async def headers_only(scope: Any, receive: Any, send: Any) -> None:
    """The gRPC Trailers-Only shape: a head, then an empty final body."""
    headers = [(b"content-type", b"application/grpc"), (b"grpc-status", b"0")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_headers_only_response_is_one_headers_frame_with_end_stream() -> None:
    with running(headers_only) as server:
        result = run_tool("nghttp", "-v", url(server))
    assert result.returncode == 0, result.stderr
    frames = received_on_streams(result.stdout)
    assert [(f.kind, f.flags) for f in frames] == [("HEADERS", END_STREAM | END_HEADERS)]
    assert ":status: 200" in frames[0].fields and "grpc-status: 0" in frames[0].fields


def test_h2load_many_streams_on_ten_connections() -> None:
    with running(hello) as server:
        result = run_tool("h2load", "-n", "20000", "-c", "10", "-m", "100", url(server), timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "Application protocol: h2c" in out
    assert "20000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert "status codes: 20000 2xx" in out


def test_h2load_more_than_1000_requests_on_one_connection() -> None:
    with running(hello) as server:
        result = run_tool("h2load", "-n", "1100", "-c", "1", "-m", "10", url(server), timeout=60)
    out = result.stdout.decode()
    assert "1100 succeeded, 0 failed, 0 errored, 0 timeout" in out, out


# -- httpx -------------------------------------------------------------------------------------


def test_httpx_h2c_by_prior_knowledge() -> None:
    with running(hello) as server, httpx.Client(http1=False, http2=True) as client:
        responses = [client.get(url(server)) for _ in range(3)]
    assert [r.http_version for r in responses] == ["HTTP/2"] * 3
    assert all(r.status_code == 200 and r.text == "Hello, world!" for r in responses)
    assert responses[0].headers["x-a"] == "1" and responses[0].headers["server"] == "caboose"


def test_httpx_h2_over_tls_multiplexes_concurrent_requests_on_one_connection(
    certificate: tuple[Path, Path, Path],
) -> None:
    clients: set[Any] = set()
    seen: list[tuple[str, str]] = []
    in_flight = peak = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal in_flight, peak
        clients.add(tuple(scope["client"]))
        seen.append((scope["http_version"], scope["scheme"]))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1
        await hello(scope, receive, send)

    context = ssl.create_default_context(cafile=str(certificate[0]))

    async def fetch_all(port: int) -> list[httpx.Response]:
        base = f"https://127.0.0.1:{port}"
        async with httpx.AsyncClient(http2=True, verify=context, timeout=10) as client:
            first = await client.get(base + "/first")  # the connection exists from here on
            rest = await asyncio.gather(*(client.get(f"{base}/{i}") for i in range(50)))
            return [first, *rest]

    with running(app, **tls_options(certificate)) as server:
        responses = asyncio.run(fetch_all(server.port))
    assert len(responses) == 51
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert all(r.status_code == 200 and r.text == "Hello, world!" for r in responses)
    assert len(clients) == 1, clients  # one connection
    assert peak >= 10  # the streams really ran at the same time
    assert set(seen) == {("2", "https")}


# -- the h2 library: request trailers, scope, concurrency, streaming --------------------------


@pytest.mark.parametrize("body", [b"hello", b"", None], ids=["body", "empty-data", "no-data"])
def test_request_trailers_reach_the_app_and_are_not_a_second_request(
    body: bytes | None,
) -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await echo(scope, receive, send)

    trailers = [(b"x-checksum", b"abc"), (b"x-count", b"2")]
    with running(app) as server, H2Client(server.port) as client:
        sid = client.request(b"POST", b"/upload", body=body, trailers=trailers)
        upload = client.response(sid)
        after = client.get(b"/after")
    assert upload.status == 200 and upload.data == (body or b"")
    assert upload.header(b"t-x-checksum") == b"abc" and upload.header(b"t-x-count") == b"2"
    assert after.status == 200 and after.header(b"t-x-checksum") is None
    assert calls == ["/upload", "/after"]
    assert client.terminated is None


def test_scope_over_h2() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await hello(scope, receive, send)

    with running(app) as server, H2Client(server.port) as client:
        stream = client.get(b"/a%20b?x=1", headers=[(b"user-agent", b"h2-test")])
        authority = client.authority
    assert stream.status == 200 and stream.data == b"Hello, world!"
    assert seen["http_version"] == "2"
    assert "http.response.trailers" in seen["extensions"]
    assert "http.request.trailers" in seen["extensions"]
    assert (b"host", authority) in seen["headers"]
    assert (b"user-agent", b"h2-test") in seen["headers"]
    assert not any(name.startswith(b":") for name, _ in seen["headers"])
    assert (seen["method"], seen["scheme"], seen["path"]) == ("GET", "http", "/a b")
    assert (seen["raw_path"], seen["query_string"]) == (b"/a%20b", b"x=1")


def test_a_slow_stream_does_not_delay_the_others() -> None:
    with running(slow) as server, H2Client(server.port) as client:
        started = time.monotonic()
        slow_id = client.request(b"GET", b"/?1")
        fast_id = client.request(b"GET", b"/?0")
        fast = client.response(fast_id)
        fast_at = time.monotonic() - started
        slow_done_early = client.streams[slow_id].done
        late = client.response(slow_id)
    assert fast.status == 200 and late.status == 200
    # Before the slow one could end (it takes 1 s): 0.5 s was missed on a loaded machine.
    assert fast_at < 0.9, f"the fast stream waited {fast_at:.2f} s"
    assert not slow_done_early
    assert late.finished_at is not None and late.finished_at - started >= 0.9


def test_bidirectional_streaming_echo() -> None:
    with running(demo_app) as server, H2Client(server.port) as client:
        sid = client.request(b"POST", b"/echo", end_stream=False)
        stream = client.streams[sid]
        client.send_body(sid, b"chunk 1;")
        client.wait_for(lambda: bytes(stream.data) == b"chunk 1;", what="the first echo")
        assert stream.status == 200 and not stream.done
        client.send_body(sid, b"chunk 2;")
        client.wait_for(lambda: bytes(stream.data) == b"chunk 1;chunk 2;", what="the 2nd echo")
        assert not stream.done
        client.end_stream(sid)
        client.response(sid)
    assert stream.ended and stream.reset is None
    assert bytes(stream.data) == b"chunk 1;chunk 2;"


def test_more_than_1000_requests_on_one_connection_without_goaway() -> None:
    with running(hello) as server, H2Client(server.port) as client:
        for _ in range(110):
            ids = [client.request() for _ in range(10)]
            for sid in ids:
                stream = client.response(sid)
                assert stream.status == 200 and stream.data == b"Hello, world!"
        last = client.get()
        terminated, closed = client.terminated, client.closed
    assert last.stream_id == 2201 and last.status == 200
    assert terminated is None and not closed


async def big(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] != "/big":
        await echo(scope, receive, send)
        return
    headers = [(b"content-length", b"%d" % len(PAYLOAD))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PAYLOAD})


def test_one_mebibyte_response_body_over_h2c() -> None:
    with running(big) as server, H2Client(server.port, timeout=15) as client:
        stream = client.get(b"/big")
    assert stream.status == 200 and stream.header(b"content-length") == b"1048576"
    assert len(stream.data) == len(PAYLOAD) and bytes(stream.data) == PAYLOAD


def test_one_mebibyte_request_body_over_h2c() -> None:
    with running(big) as server, H2Client(server.port, timeout=15) as client:
        stream = client.get(b"/echo", method=b"POST", body=PAYLOAD)
    assert stream.status == 200
    assert len(stream.data) == len(PAYLOAD) and bytes(stream.data) == PAYLOAD
