"""The bundled demo app (``make run``): what caboose is for, in six endpoints."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

from caboose.asgi.http import Message, Receive, Scope, Send

CHUNKS = [b"caboose streams this body in pieces,\n", b"then sends a checksum after it,\n"]
CHUNKS += [b"in HTTP trailers that really reach the wire.\n"]

INDEX = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>caboose</title></head>
<body>
<h1>caboose</h1>
<p>An ASGI server with HTTP trailers that reach the wire.</p>
<ul>
<li><a href="/trailers">/trailers</a>: a streamed body followed by <code>content-digest</code>
and <code>server-timing</code> trailers. Try
<code>curl --raw -H 'TE: trailers' http://127.0.0.1:8000/trailers</code></li>
<li><code>/echo</code>: streams the request body back (POST something to it), and its
request trailers prefixed <code>echo-trailer-</code>: as response headers when the body came
in one piece, as response trailers (ask with <code>TE: trailers</code>) when it streamed.</li>
<li><a href="/stream">/stream</a>: server-sent events, one a second, five in all.</li>
<li><a href="/chat">/chat</a>: a page whose WebSocket (<code>/ws</code>) echoes what you type
and says which HTTP version carries it (HTTP/2 by RFC 8441 when the page came over HTTP/2).</li>
</ul>
</body></html>
"""


CHAT = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>caboose: WebSocket</title></head>
<body>
<h1>WebSocket echo</h1>
<p id="status">connecting...</p>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>send</button></form>
<ul id="log"></ul>
<script>
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const socket = new WebSocket(scheme + location.host + "/ws");
const status = document.getElementById("status");
window.received = [];
function show(text) {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").append(item);
}
socket.onopen = () => { status.textContent = "open"; window.socketOpen = true; };
socket.onmessage = (event) => { window.received.push(event.data); show(event.data); };
socket.onclose = (event) => {
  status.textContent = "closed (" + event.code + ")";
  window.closedWith = event.code;
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  socket.send(input.value);
  input.value = "";
};
</script>
</body></html>
"""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await _ws(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    routes = {
        "/": _index,
        "/trailers": _trailers,
        "/echo": _echo,
        "/stream": _stream,
        "/chat": _chat,
    }
    handler = routes.get(scope["path"], _not_found)
    await handler(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _index(scope: Scope, receive: Receive, send: Send) -> None:
    await _respond(send, 200, b"text/html; charset=utf-8", INDEX)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")


async def _trailers(scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"trailer", b"content-digest, server-timing"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    digest = hashlib.sha256()
    for chunk in CHUNKS:
        digest.update(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    encoded = base64.b64encode(digest.digest())
    elapsed = (time.perf_counter() - started) * 1000
    trailers = [
        (b"content-digest", b"sha-256=:" + encoded + b":"),
        (b"server-timing", b"app;dur=%.3f" % elapsed),
    ]
    await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    first = await receive()
    if first.get("more_body"):
        # Stream: the head goes out now and each chunk is echoed as it arrives. The request
        # trailers come with the last piece, after our head: they go back as trailers.
        headers = [(b"content-type", b"application/octet-stream")]
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        await send({**start, "trailers": True})
        await send({"type": "http.response.body", "body": first["body"], "more_body": True})
        message: Message = first
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        echoed = [(b"echo-trailer-" + name, value) for name, value in message.get("trailers", [])]
        await send({"type": "http.response.trailers", "headers": echoed})
        return
    request_trailers: list[Any] = first.get("trailers", [])
    headers = [(b"content-type", b"application/octet-stream")]
    headers += [(b"echo-trailer-" + name, value) for name, value in request_trailers]
    headers.append((b"content-length", b"%d" % len(first["body"])))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": first["body"]})


async def _stream(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for number in range(1, 6):
        event = b"id: %d\ndata: tick %d\n\n" % (number, number)
        await send({"type": "http.response.body", "body": event, "more_body": True})
        if number < 5:
            await asyncio.sleep(1.0)
    await send({"type": "http.response.body", "body": b""})


async def _chat(scope: Scope, receive: Receive, send: Send) -> None:
    await _respond(send, 200, b"text/html; charset=utf-8", CHAT)


async def _ws(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo each message back; the first says which HTTP version carries the socket."""
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})  # a 403 for the handshake
        return
    await send({"type": "websocket.accept"})
    version = scope["http_version"]
    await send({"type": "websocket.send", "text": f"connected over HTTP/{version}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": "echo: " + text})
