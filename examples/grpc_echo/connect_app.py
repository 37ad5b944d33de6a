"""The Echo service on connectrpc, a third-party ASGI framework for gRPC, gRPC-Web and Connect.

    caboose examples.grpc_echo.connect_app:app --port 50051

connectrpc does the wire work itself: it frames messages, reads ``grpc-timeout`` and cancels
the handler at the deadline or when the client goes away, and sends the status in trailers
(``http.response.trailers``, which caboose delivers as a trailing HEADERS frame) or, for an
error before any message, as a Trailers-Only response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from examples.grpc_echo import service, stubs

echo_connect: Any = stubs.load("echo_connect")

MAX_MESSAGE = 16 << 20  # the 4 MiB cases of the battery fit with room to spare


class EchoService:
    async def unary(self, request: Any, ctx: Any) -> Any:
        echo_metadata(ctx)
        return service.unary(request)

    async def server_stream(self, request: Any, ctx: Any) -> AsyncIterator[Any]:
        echo_metadata(ctx)
        for response in service.server_stream(request):
            yield response

    async def client_stream(self, requests: AsyncIterator[Any], ctx: Any) -> Any:
        return await service.client_stream(requests)

    async def bidi(self, requests: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
        async for response in service.bidi(requests):
            yield response

    async def fail(self, request: Any, ctx: Any) -> Any:
        code, message = service.failure(request)
        raise ConnectError(list(Code)[code - 1], message)  # Code lists gRPC codes 1-16 in order

    async def slow(self, request: Any, ctx: Any) -> Any:
        return await service.slow(request)


def echo_metadata(ctx: Any) -> None:
    for name, value in service.echoed_metadata(ctx.request_headers.allitems()):
        ctx.response_headers.add(name, value)
        ctx.response_trailers.add(name, value)


app = echo_connect.EchoASGIApplication(EchoService(), read_max_bytes=MAX_MESSAGE)
