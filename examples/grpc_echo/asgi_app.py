"""The Echo service as a plain ASGI app that speaks the gRPC wire format itself, no framework.

    caboose examples.grpc_echo.asgi_app:app --port 50051

gRPC over HTTP/2 (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) is a POST
whose body is a series of length-prefixed messages, answered by a 200 with
``content-type: application/grpc``, the response messages, and the outcome in trailers:
``grpc-status`` and a percent-encoded ``grpc-message``. ASGI carries all of it with the
``http.response.trailers`` extension. An error before any response message is sent as
Trailers-Only: one HEADERS frame holding the status, which caboose ends with END_STREAM.

Each call runs in one task with a watcher beside it. The watcher is the only reader of
``receive()``: it splits the body into messages for the handler and, once the body is done,
waits for ``http.disconnect``; a client that resets the stream or leaves cancels the handler at
once. ``grpc-timeout`` bounds the whole call and answers DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from examples.grpc_echo import service

pb = service.pb
logger = logging.getLogger(__name__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SERVICE = "/caboose.echo.v1.Echo/"
MAX_MESSAGE = 16 << 20  # larger request messages get RESOURCE_EXHAUSTED
QUEUED_MESSAGES = 16  # decoded requests held for the handler; beyond, reading pauses
OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED = 0, 1, 2, 4, 8
UNIMPLEMENTED, INTERNAL = 12, 13


class GrpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ClientGone(Exception):
    """The client reset the stream or closed the connection: nobody reads an answer."""


# -- the wire format ---------------------------------------------------------------------------


def frame(message: bytes) -> bytes:
    """A length-prefixed message: compressed flag 0, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with every byte outside printable ASCII, and '%' itself, as %XX."""
    return urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()


TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: bytes | None) -> float | None:
    """``grpc-timeout`` in seconds: at most 8 digits and one unit letter."""
    if value is None:
        return None
    match = TIMEOUT.fullmatch(value.decode("latin-1"))
    if match is None:
        raise GrpcError(INTERNAL, f"malformed grpc-timeout {value!r}")
    return int(match[1]) * TIMEOUT_UNITS[match[2]]


class Requests:
    """The request body as messages. ``watch()`` reads ``receive()`` (the only caller of it),
    splits messages off the bytes and queues them; the queue is bounded, so a client that
    sends faster than the handler reads meets HTTP/2 flow control instead of our memory."""

    def __init__(self, receive: Receive, message_type: Any) -> None:
        self._receive = receive
        self._type = message_type
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUED_MESSAGES)
        self._buffer = bytearray()

    async def watch(self) -> None:
        more_body = True
        while more_body:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            self._buffer += message.get("body", b"")
            more_body = message.get("more_body", False)
            for request in self._split():
                await self._queue.put(request)
        if self._buffer:
            raise GrpcError(INTERNAL, "request body ends inside a message")
        await self._queue.put(None)
        while (await self._receive())["type"] != "http.disconnect":
            pass  # only a disconnect can follow the body (ASGI)
        raise ClientGone

    def _split(self) -> list[bytes]:
        messages, buffer = [], self._buffer
        while len(buffer) >= 5:
            if buffer[0] != 0:
                raise GrpcError(UNIMPLEMENTED, "compressed messages are not supported")
            length = int.from_bytes(buffer[1:5], "big")
            if length > MAX_MESSAGE:
                raise GrpcError(RESOURCE_EXHAUSTED, f"message of {length} bytes is too large")
            if len(buffer) < 5 + length:
                break
            messages.append(bytes(buffer[5 : 5 + length]))
            del buffer[: 5 + length]
        return messages

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (data := await self._queue.get()) is not None:
            yield self._decode(data)

    async def one(self) -> Any:
        """The single request of a unary or server-streaming call."""
        first, second = await self._queue.get(), await self._queue.get()
        if first is None or second is not None:
            raise GrpcError(INTERNAL, "a unary call takes exactly one request message")
        return self._decode(first)

    def _decode(self, data: bytes) -> Any:
        try:
            return self._type.FromString(data)
        except Exception as exc:
            raise GrpcError(INTERNAL, f"cannot parse the request message: {exc}") from None


class Responses:
    """The response side of one call: the head goes out with the first message, and the
    status either as trailers after the messages or, when no message was sent, Trailers-Only."""

    def __init__(self, send: Send, metadata: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._metadata = metadata  # echoed as initial and as trailing metadata
        self.started = False

    async def send(self, message: Any) -> None:
        if not self.started:
            self.started = True
            headers = [(b"content-type", b"application/grpc"), *self._metadata]
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": headers, "trailers": True}
            )
        body = frame(message.SerializeToString())
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self, code: int = OK, message: str = "") -> None:
        status = [(b"grpc-status", b"%d" % code)]
        if message:
            status.append((b"grpc-message", percent_encode(message)))
        if not self.started:  # Trailers-Only: the status rides on the only HEADERS frame
            self.started = True
            headers = [(b"content-type", b"application/grpc"), *status, *self._metadata]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            await self._send({"type": "http.response.body", "body": b""})
            return
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        trailers = [*status, *self._metadata]
        await self._send({"type": "http.response.trailers", "headers": trailers})


# -- the methods -------------------------------------------------------------------------------

Handler = Callable[[Requests, Responses], Awaitable[None]]


async def unary(requests: Requests, responses: Responses) -> None:
    await responses.send(service.unary(await requests.one()))


async def server_stream(requests: Requests, responses: Responses) -> None:
    for response in service.server_stream(await requests.one()):
        await responses.send(response)


async def client_stream(requests: Requests, responses: Responses) -> None:
    await responses.send(await service.client_stream(aiter(requests)))


async def bidi(requests: Requests, responses: Responses) -> None:
    async for response in service.bidi(aiter(requests)):
        await responses.send(response)


async def fail(requests: Requests, responses: Responses) -> None:
    raise GrpcError(*service.failure(await requests.one()))


async def slow(requests: Requests, responses: Responses) -> None:
    await responses.send(await service.slow(await requests.one()))


METHODS: dict[str, tuple[Handler, Any]] = {
    "Unary": (unary, pb.EchoRequest),
    "ServerStream": (server_stream, pb.EchoRequest),
    "ClientStream": (client_stream, pb.EchoRequest),
    "Bidi": (bidi, pb.EchoRequest),
    "Fail": (fail, pb.FailRequest),
    "Slow": (slow, pb.SlowRequest),
}


# -- the ASGI app ------------------------------------------------------------------------------


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await serve_call(scope, receive, send)


async def serve_call(scope: Scope, receive: Receive, send: Send) -> None:
    headers = dict(scope["headers"])  # gRPC sends each of the fields read here once
    if scope["method"] != "POST" or not headers.get(b"content-type", b"").startswith(
        b"application/grpc"
    ):
        await plain_response(send, 415, b"gRPC calls are POSTs of application/grpc\n")
        return
    metadata = [(n.encode(), v.encode()) for n, v in service.echoed_metadata(text(scope))]
    responses = Responses(send, metadata)
    if "http.response.trailers" not in scope.get("extensions", {}):
        await responses.finish(INTERNAL, "the ASGI server cannot send trailers")
        return
    try:
        handler, request_type = METHODS[scope["path"].removeprefix(SERVICE)]
        timeout = parse_timeout(headers.get(b"grpc-timeout"))
    except KeyError:
        await responses.finish(UNIMPLEMENTED, f"unknown method {scope['path']}")
        return
    except GrpcError as exc:
        await responses.finish(exc.code, exc.message)
        return
    await run(handler, Requests(receive, request_type), responses, timeout)


async def run(
    handler: Handler, requests: Requests, responses: Responses, timeout: float | None
) -> None:
    """Run the handler beside the body watcher, under the deadline; answer with its outcome."""
    try:
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
            watcher = group.create_task(requests.watch())
            await handler(requests, responses)
            watcher.cancel()
    except* TimeoutError:  # first: TimeoutError is an OSError too
        await responses.finish(DEADLINE_EXCEEDED, "deadline exceeded")
    except* (ClientGone, OSError):
        pass  # the client left (an OSError from send(): ASGI 2.4); nobody reads an answer
    except* GrpcError as group:
        error = group.exceptions[0]
        assert isinstance(error, GrpcError)
        await responses.finish(error.code, error.message)
    except* Exception:
        logger.exception("Echo handler failed")
        await responses.finish(UNKNOWN, "the handler failed")
    else:
        await responses.finish()


def text(scope: Scope) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]


async def plain_response(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
