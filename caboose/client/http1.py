"""HTTP/1.1 client connection: one exchange at a time, kept alive between them (RFC 9112).

Requests are not pipelined: a connection carries the next exchange only once the last one
is over on both sides, and the pool hands it out again. A body of unknown length goes
chunked, which is also what lets a request end with trailers (§7.1.2). Reading pauses while
more than ``read_buffer`` body bytes wait for the caller, so a slow reader holds the server
back through TCP. Abandoning an exchange mid-body leaves the connection unusable: it closes.
"""

from __future__ import annotations

import asyncio

from caboose.client.driver import ClientDriver, Options, Request, Unavailable
from caboose.client.stream import ClientStream
from caboose.core.events import Headers, ResponseReceived
from caboose.core.h1 import ConnectionState
from caboose.core.h1_client import H1ClientConnection
from caboose.transport.flow import ReadGate


def _wants_close(headers: Headers, http_version: str) -> bool:
    """RFC 9112 §9.3: ``Connection: close``, or HTTP/1.0 without ``keep-alive``."""
    options = b",".join(value for name, value in headers if name == b"connection").lower()
    tokens = {token.strip() for token in options.split(b",")}
    if http_version == "1.0":
        return b"keep-alive" not in tokens
    return b"close" in tokens


def _with_te_option(headers: Headers) -> Headers:
    """RFC 9110 §10.1.4: TE is hop-by-hop, so its sender also names it in Connection."""
    if not any(name == b"te" for name, _ in headers):
        return headers
    options = [value for name, value in headers if name == b"connection"]
    if any(b"te" in (token.strip().lower() for token in value.split(b",")) for value in options):
        return headers
    fields = [field for field in headers if field[0] != b"connection"]
    return [*fields, (b"connection", b", ".join([*options, b"te"]))]


class H1ClientDriver(ClientDriver):
    http_version = "HTTP/1.1"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.core = self.h1 = H1ClientConnection()
        self.current: ClientStream | None = None
        self.keep_alive = True
        self._server_done = False
        self._read_gate: ReadGate | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self._read_gate = ReadGate(self.transport, self.options.read_buffer)

    @property
    def usable(self) -> bool:
        return super().usable and self.current is None and self.keep_alive

    @property
    def idle(self) -> bool:
        return self.current is None

    async def start(self, request: Request) -> ClientStream:
        if not self.usable or self.h1.state is not ConnectionState.OPEN:
            raise Unavailable
        headers = [(b"host", request.authority), *_with_te_option(request.headers)]
        stream_id = self.h1.send_request(
            request.method, request.target, headers, end_stream=request.end_stream
        )
        stream = self.current = ClientStream(self, stream_id, request.limits, request.description)
        stream.request_done = request.end_stream
        self.streams[stream_id] = stream
        self._server_done = False
        self.exchanges += 1
        self.flush_soon()
        return stream

    async def send_data(self, stream: ClientStream, data: bytes, *, end_stream: bool) -> None:
        self.check_sending(stream)
        self.h1.send_data(stream.stream_id, data, end_stream=end_stream)
        self.flush_soon()
        if end_stream:
            self.sent(stream)
        await self.drained(stream)

    def sent(self, stream: ClientStream) -> None:
        super().sent(stream)
        self._maybe_done(stream)

    def on_head(self, stream: ClientStream, event: ResponseReceived) -> None:
        if _wants_close(event.headers, event.http_version):
            self.keep_alive = False
        stream.on_head(event.status, event.headers, f"HTTP/{event.http_version}")

    def on_end(self, stream: ClientStream) -> None:
        self._server_done = True
        self._maybe_done(stream)

    def _maybe_done(self, stream: ClientStream) -> None:
        """Both sides of the exchange are over: the connection is free again, or closes."""
        if not (stream.request_done and self._server_done) or self.current is not stream:
            return
        self.current = None
        self.streams.pop(stream.stream_id, None)
        if self.keep_alive and self.error is None and self.h1.state is ConnectionState.OPEN:
            if self.on_released is not None:
                self.on_released(self)
        else:
            self.close()

    def buffered(self, size: int) -> None:
        if self._read_gate is not None:
            self._read_gate.received(size)

    def consumed(self, stream_id: int, size: int) -> None:
        if self._read_gate is not None:
            self._read_gate.consumed(size)

    def cancel(self, stream_id: int) -> None:
        """An HTTP/1.1 exchange cannot be abandoned and the connection kept: close it."""
        if self.streams.pop(stream_id, None) is None:
            return  # over already: the connection may be serving another exchange
        self.keep_alive = False
        self.current = None
        self.close()
