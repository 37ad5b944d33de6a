"""One exchange as the client sees it: the response head, body and trailers as they arrive.

A ``ClientStream`` sits between a connection driver (``client/http1.py``, ``client/http2.py``)
and the caller's ``Response``. The driver feeds it what the core parsed; the caller awaits the
head and then the body, chunk by chunk. Each chunk is credited back to the connection only
when the caller takes it, so a slow reader holds the server back (HTTP/2 flow control, or
paused reading on HTTP/1.1) instead of filling our memory.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections import deque
from dataclasses import dataclass

from caboose.client.errors import (
    ClientError,
    CloseReason,
    ReadTimeout,
    ResponseTooLarge,
)
from caboose.core.events import Headers

log = logging.getLogger("caboose.client")


class Carrier(typing.Protocol):
    """What a stream needs of the connection that carries it."""

    http_version: str

    def consumed(self, stream_id: int, size: int) -> None:
        """The caller took ``size`` flow-controlled bytes: credit them back."""

    def cancel(self, stream_id: int) -> None:
        """Abandon the exchange: RST_STREAM CANCEL, or close the HTTP/1.1 connection."""


@dataclass(slots=True)
class Limits:
    """Per-exchange limits; ``None`` means none."""

    max_response_size: int | None = None
    warn_response_size: int | None = None
    read_timeout: float | None = None


@dataclass(slots=True)
class Head:
    status: int
    headers: Headers
    http_version: str


class ClientStream:
    """The receiving half of one exchange, fed by a driver and read by a ``Response``."""

    def __init__(self, carrier: Carrier, stream_id: int, limits: Limits, target: str) -> None:
        self.carrier = carrier
        self.stream_id = stream_id
        self.limits = limits
        self.target = target  # for log lines: method and URL
        self.head: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self.informational: list[tuple[int, Headers]] = []
        self.trailers: Headers = []
        self.received = 0  # body bytes so far
        self.reason: CloseReason | None = None  # set once the exchange is over
        self.error: ClientError | None = None
        self.request_done = False  # our side is sent (the driver sets it)
        self._chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False  # the server's side is over (END_STREAM, end of message)
        self._warned = False

    # -- fed by the driver -------------------------------------------------------------------

    def on_informational(self, status: int, headers: Headers) -> None:
        self.informational.append((status, headers))

    def on_head(self, status: int, headers: Headers, http_version: str) -> None:
        if self.head.done():
            return
        self.head.set_result(Head(status, headers, http_version))
        length = _content_length(headers)
        if length is not None:
            self._check_size(length, announced=True)

    def on_data(self, data: bytes, flow_length: int) -> None:
        if self.reason is not None:
            self.carrier.consumed(self.stream_id, flow_length)  # nobody will read it
            return
        self.received += len(data)
        self._chunks.append((data, flow_length))
        self._check_size(self.received, announced=False)
        self._wake()

    def on_trailers(self, headers: Headers) -> None:
        self.trailers = headers

    def on_end(self) -> None:
        """The server finished its side; the exchange is over once the caller read it all."""
        self._ended = True
        self._wake()

    def fail(self, error: ClientError) -> None:
        """The exchange ended early (reset, connection lost, limit): the caller hears
        ``error`` at its next wait. The first reason sticks."""
        if self.reason is not None or self._ended:
            return  # over already: a reset after the whole response changes nothing
        self.error = error
        self.reason = error.reason
        self._chunks.clear()
        if not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved here: the caller may never await the head
        self._wake()

    def _check_size(self, size: int, *, announced: bool) -> None:
        limits = self.limits
        warn = limits.warn_response_size
        if warn is not None and size > warn and not self._warned:
            self._warned = True
            how = "announces" if announced else "has reached"
            log.warning(
                "response to %s %s %d bytes (warn_response_size %d)", self.target, how, size, warn
            )
        limit = limits.max_response_size
        if limit is not None and size > limit:
            self.fail(ResponseTooLarge(size, limit, announced=announced))
            self.carrier.cancel(self.stream_id)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller ------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The whole response is read (or the exchange failed)."""
        return self.reason is not None

    async def wait_head(self) -> Head:
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                # shielded: a timeout or a cancel must not cancel the future the driver sets
                return await asyncio.shield(self.head)
        except ClientError:
            raise
        except TimeoutError:
            self.time_out()
            raise self._raise() from None

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end; raises what ended it early."""
        while True:
            if self.error is not None:
                raise self.error
            if self._chunks:
                data, flow_length = self._chunks.popleft()
                self.carrier.consumed(self.stream_id, flow_length)
                return data
            if self._ended:
                self.reason = CloseReason.ENDED
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.limits.read_timeout):
                    await self._waiter
            except TimeoutError:
                self.time_out()
            finally:
                self._waiter = None

    def time_out(self) -> None:
        if self.reason is None:
            self.fail(ReadTimeout(f"nothing received for {self.limits.read_timeout} s"))
            self.carrier.cancel(self.stream_id)

    def _raise(self) -> ClientError:
        return self.error or ReadTimeout(f"nothing received for {self.limits.read_timeout} s")

    def abandon(self) -> None:
        """The caller stops reading before the end: reset the stream, drop what is queued."""
        if self.reason is None:
            self.reason = CloseReason.CANCELLED
            for _, flow_length in self._chunks:
                self.carrier.consumed(self.stream_id, flow_length)
            self._chunks.clear()
            self.carrier.cancel(self.stream_id)
        elif not self.request_done:
            self.carrier.cancel(self.stream_id)  # the body is still being sent: stop it


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
