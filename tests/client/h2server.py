"""An HTTP/2 server on the python-hyper ``h2`` library, for testing our client against an
implementation we did not write. It runs in the test's own event loop on 127.0.0.1:0; a test
gives it a handler that answers (or misbehaves) per event, and reads what it recorded."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Self

import h2.config
import h2.connection
import h2.events
import h2.settings


class Peer:
    """One connection as the handler sees it: the h2 state machine and the socket."""

    def __init__(self, server: H2Server, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.mute = False  # drop everything we would send (a server gone silent)
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.tasks: set[asyncio.Task[Any]] = set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.mute and not self.writer.is_closing():
            self.writer.write(data)

    def respond(
        self,
        stream_id: int,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """A whole response at once (the body must fit the window)."""
        fields = [(b":status", b"%d" % status), *(headers or [])]
        self.conn.send_headers(stream_id, fields, end_stream=not body and not trailers)
        if body:
            self.conn.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        self.flush()

    def later(self, delay: float, action: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action()
            self.flush()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


Handler = Callable[[Peer, h2.events.Event], Awaitable[None] | None]


class H2Server:
    """``async with H2Server(handler) as server``: serves until the block ends."""

    def __init__(
        self,
        handler: Handler,
        *,
        settings: dict[int, int] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.settings = settings or {}
        self.tls = tls
        self.events: list[h2.events.Event] = []
        self.connections = 0
        self.peers: list[Peer] = []
        self.errors: list[Exception] = []  # what ended a connection on the server's side
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for peer in self.peers:
            for task in list(peer.tasks):
                task.cancel()
            peer.writer.close()
        await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def of_type(self, kind: type[h2.events.Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = Peer(self, writer)
        self.peers.append(peer)
        # in the first SETTINGS frame: h2 sends its acknowledged values, so set them as those
        peer.conn.local_settings = h2.settings.Settings(client=False, initial_values=self.settings)
        peer.conn.initiate_connection()
        peer.flush()
        try:
            while data := await reader.read(65536):
                for event in peer.conn.receive_data(data):
                    self.events.append(event)
                    result = self.handler(peer, event)
                    if result is not None:
                        await result
                peer.flush()
        except (ConnectionError, h2.exceptions.ProtocolError) as exc:
            self.errors.append(exc)
        finally:
            writer.close()


def tls_context(cert: Any) -> ssl.SSLContext:
    """A server context offering h2 by ALPN, with a tests/tls.py certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert.cert), str(cert.key))
    context.set_alpn_protocols(["h2"])
    return context


def run(scenario: Awaitable[None], timeout: float = 20.0) -> None:
    """Run an async scenario with a deadline, so a hang fails the test instead."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario, timeout)

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
