"""The Echo service on grpcio's own asyncio server, for comparison only (``make bench``).

    python -m examples.grpc_echo.grpcio_server --port 50051

This is what a gRPC-only deployment runs without an ASGI server: Google's C core doing HTTP/2,
the handlers in Python. It serves gRPC alone: no HTTP/1.1, gRPC-Web or Connect, no ASGI app
beside it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from examples.grpc_echo import service, stubs

pb_grpc: Any = stubs.load("echo_pb2_grpc")
STATUS = {status.value[0]: status for status in grpc.StatusCode}


class EchoServicer(pb_grpc.EchoServicer):  # type: ignore[misc]
    """The generated servicer's method names are the .proto's: CamelCase."""

    async def Unary(self, request: Any, context: Any) -> Any:
        await echo_metadata(context)
        return service.unary(request)

    async def ServerStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await echo_metadata(context)
        for response in service.server_stream(request):
            yield response

    async def ClientStream(self, requests: AsyncIterator[Any], context: Any) -> Any:
        return await service.client_stream(requests)

    async def Bidi(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for response in service.bidi(requests):
            yield response

    async def Fail(self, request: Any, context: Any) -> Any:
        code, message = service.failure(request)
        await context.abort(STATUS[code], message)

    async def Slow(self, request: Any, context: Any) -> Any:
        return await service.slow(request)


async def echo_metadata(context: Any) -> None:
    metadata = service.echoed_metadata(context.invocation_metadata())
    if metadata:
        await context.send_initial_metadata(metadata)
        context.set_trailing_metadata(metadata)


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_EchoServicer_to_server(EchoServicer(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    options = parser.parse_args()
    asyncio.run(serve(options.host, options.port))


if __name__ == "__main__":
    main()
