"""Small ASGI apps the tests serve."""

from __future__ import annotations

import asyncio
from typing import Any

Message = dict[str, Any]


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Echo the whole body; request trailers come back as ``t-*`` response headers."""
    body = b""
    message: Message = {"more_body": True}
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    headers = [(b"t-" + name, value) for name, value in message.get("trailers", [])]
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def scope_json(scope: Any, receive: Any, send: Any) -> None:
    import json

    view = {k: v for k, v in scope.items() if k not in ("headers", "state", "asgi")}
    view["raw_path"] = scope["raw_path"].decode("latin-1")
    view["query_string"] = scope["query_string"].decode("latin-1")
    view["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
    body = json.dumps(view).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def trailers_app(*steps: Message, start: Message | None = None) -> Any:
    """An app that sends a start (trailers: True by default) then ``steps`` in order."""
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        head = start or {"type": "http.response.start", "status": 200, "trailers": True}
        await send(head)
        try:
            for step in steps:
                await send(step)
        except RuntimeError as exc:
            errors.append(exc)
            raise

    app.errors = errors  # type: ignore[attr-defined]
    return app


async def slow(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(float(scope["query_string"] or b"0.2"))
    await hello(scope, receive, send)
