"""Minimal ASGI 3 hello-world app used by the benchmark harness.

Serve it as ``benchmarks.hello:app`` from the project root. Every server under test runs this
same app, so the numbers compare the servers, not the apps. ``GET /1mib`` answers a 1 MiB body
(built once, at import) for the throughput scenario; ``GET /stream`` streams 100 MiB in 64 KiB
body messages with no Content-Length (chunked over HTTP/1.1), for the time-to-first-byte
scenarios; every other path answers ``Hello, world!``.
A WebSocket on any path echoes every message back, as it came (the ws-* scenarios).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello, world!"

HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(BODY)).encode("ascii")),
]

LARGE_PATH = "/1mib"
LARGE_BODY = bytes(range(256)) * 4096  # 1 MiB, not all one byte value
LARGE_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(LARGE_BODY)).encode("ascii")),
]

STREAM_PATH = "/stream"
STREAM_CHUNK = LARGE_BODY[: 64 * 1024]
STREAM_SIZE = 100 * 1024 * 1024  # bytes, a whole number of chunks
STREAM_HEADERS = [(b"content-type", b"application/octet-stream")]


async def stream(send: Send) -> None:
    """The 100 MiB body, one 64 KiB message at a time: a server that sends the first before it
    has the last shows it in the time to first byte."""
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    for _ in range(STREAM_SIZE // len(STREAM_CHUNK) - 1):
        await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": False})


async def lifespan(receive: Receive, send: Send) -> None:
    """Complete startup and shutdown without doing anything else."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo(receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        data, text = message.get("bytes"), message.get("text")  # one of them may be left out
        await send({"type": "websocket.send", "bytes": data, "text": text})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        # A GET has no body worth reading; answer straight away. Fresh message dicts per request,
        # as a framework would build them.
        if scope["path"] == STREAM_PATH:
            await stream(send)
            return
        if scope["path"] == LARGE_PATH:
            headers, body = LARGE_HEADERS, LARGE_BODY
        else:
            headers, body = HEADERS, BODY
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    elif kind == "websocket":
        await echo(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
    else:
        raise RuntimeError(f"hello app does not handle scope type {kind!r}")
