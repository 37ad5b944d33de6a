"""What the Echo service does, shared by both implementations (connect_app.py, asgi_app.py).

Each function maps request messages to response messages and knows nothing of the wire, so
the two apps differ only in how they speak gRPC. ``SLOW_CALLS`` records how every Slow call
ended, so that a test can see that a deadline or a client's cancel reached the handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from examples.grpc_echo import stubs

pb: Any = stubs.load("echo_pb2")  # generated on first import (stubs.py)

# Request metadata with this prefix comes back as initial and as trailing metadata.
ECHO_PREFIX = "x-echo-"


def unary(request: Any) -> Any:
    return pb.EchoResponse(message=request.message, payload=request.payload)


def server_stream(request: Any) -> Iterator[Any]:
    for index in range(request.count):
        yield pb.EchoResponse(message=request.message, payload=request.payload, index=index)


async def client_stream(requests: AsyncIterator[Any]) -> Any:
    parts, size = [], 0
    async for request in requests:
        parts.append(request.message)
        size += len(request.payload)
    return pb.EchoResponse(message="".join(parts), index=size)


async def bidi(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    index = 0
    async for request in requests:
        yield pb.EchoResponse(message=request.message, payload=request.payload, index=index)
        index += 1


def failure(request: Any) -> tuple[int, str]:
    """The (status code, message) a Fail call asked for; a code that is not an error status
    (1-16, https://grpc.io/docs/guides/status-codes/) becomes UNKNOWN (2)."""
    code = request.code if 1 <= request.code <= 16 else 2
    return code, request.message


def echoed_metadata(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's ``x-echo-*`` metadata, as it is sent back (``-bin`` values stay base64)."""
    return [(name, value) for name, value in headers if name.lower().startswith(ECHO_PREFIX)]


@dataclass
class SlowCall:
    started: float
    ended: float | None = None
    outcome: str = "running"  # then "finished" or "cancelled"


SLOW_CALLS: dict[str, SlowCall] = {}


async def slow(request: Any) -> Any:
    """Sleep, recording whether the sleep finished or was cancelled (deadline, client cancel)."""
    record = SLOW_CALLS[request.call_id] = SlowCall(started=time.monotonic())
    try:
        await asyncio.sleep(request.seconds)
    except asyncio.CancelledError:
        record.outcome, record.ended = "cancelled", time.monotonic()
        raise
    record.outcome, record.ended = "finished", time.monotonic()
    return pb.EchoResponse(message=f"slept {request.seconds}s")
