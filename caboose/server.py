"""The server: listeners, lifespan, default headers, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import threading
from email.utils import formatdate
from typing import Any

from caboose import __version__
from caboose.asgi.lifespan import Lifespan
from caboose.config import Config
from caboose.errors import ConfigError
from caboose.importer import load_app
from caboose.transport.negotiate import Negotiator
from caboose.transport.state import ServerState
from caboose.transport.tls import server_context

logger = logging.getLogger("caboose.error")


class ServeError(RuntimeError):
    """The server could not start (bind failure, ...); the message says why in one line."""


class Server:
    """Serve one app; ``started`` is set once listening, ``request_exit()`` stops it."""

    def __init__(self, app: Any, config: Config) -> None:
        self.config = config
        self.app_source = app
        self.started = threading.Event()
        self.sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Event | None = None
        self._servers: list[asyncio.AbstractServer] = []

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def request_exit(self) -> None:
        """Ask for a graceful shutdown; safe to call from any thread or a signal handler."""
        loop = self._loop
        if loop is not None and self._exit is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
                loop.call_soon_threadsafe(self._exit.set)

    async def serve(self) -> None:
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        app = load_app(self.app_source, factory=config.factory, app_dir=config.app_dir)
        ssl_context = server_context(config)
        state = ServerState(config=config, app=app, trusted_proxies=config.trusted_proxies())
        lifespan = Lifespan(app, config.lifespan, state.lifespan_state)
        await lifespan.startup()
        try:
            await self._run(state, ssl_context)
        finally:
            await lifespan.shutdown()
        logger.info("Finished server process [%d]", os.getpid())

    async def _run(self, state: ServerState, ssl_context: Any) -> None:
        assert self._loop is not None and self._exit is not None
        clock = self._loop.create_task(self._refresh_headers(state))
        try:
            await self._listen(state, ssl_context)
            # Everything alive now (the app, its imports, our tables) lives as long as the
            # server: move it out of the collector's sight, so the full collections that
            # request churn triggers scan only young objects instead of the whole heap.
            gc.freeze()
            self._install_signal_handlers()
            self.started.set()
            await self._exit.wait()
            await self._shutdown(state)
        finally:
            clock.cancel()
            for server in self._servers:
                server.close()

    async def _listen(self, state: ServerState, ssl_context: Any) -> None:
        config = self.config
        loop = asyncio.get_running_loop()

        def factory() -> Negotiator:
            return Negotiator(state)

        try:
            if config.fd is not None:
                sock = socket.socket(fileno=config.fd)  # family and type read from the fd
                server = await loop.create_server(factory, sock=sock, ssl=ssl_context)
            elif config.uds is not None:
                server = await loop.create_unix_server(factory, path=config.uds, ssl=ssl_context)
            else:
                server = await loop.create_server(
                    factory, host=config.host, port=config.port, ssl=ssl_context, backlog=2048
                )
        except OSError as exc:
            raise ServeError(self._bind_error(exc)) from None
        self._servers.append(server)
        self.sockets = list(server.sockets)
        for sock in self.sockets:
            logger.info("caboose running on %s (Press CTRL+C to quit)", self._describe(sock))

    def _bind_error(self, exc: OSError) -> str:
        config = self.config
        where = config.uds or (f"fd {config.fd}" if config.fd is not None else None)
        where = where or f"{config.host}:{config.port}"
        if exc.errno == errno.EADDRINUSE:
            return f"cannot bind to {where}: address already in use"
        return f"cannot bind to {where}: {exc.strerror or exc}"

    def _describe(self, sock: socket.socket) -> str:
        scheme = "https" if self.config.is_tls else "http"
        name = sock.getsockname()
        if sock.family == socket.AF_INET6:
            return f"{scheme}://[{name[0]}]:{name[1]}"
        if sock.family == socket.AF_INET:
            return f"{scheme}://{name[0]}:{name[1]}"
        return f"unix socket {name}"

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests, threads): the owner calls request_exit()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.request_exit)

    async def _refresh_headers(self, state: ServerState) -> None:
        """Keep the shared Server/Date fields current; the core never reads a clock."""
        server = [(b"server", b"caboose")] if self.config.server_header else []
        while True:
            date = [(b"date", formatdate(usegmt=True).encode())] if self.config.date_header else []
            state.default_headers[:] = server + date
            await asyncio.sleep(1.0)

    async def _shutdown(self, state: ServerState) -> None:
        """Stop accepting, let in-flight requests finish up to the graceful timeout, close."""
        logger.info("Shutting down")
        state.shutting_down = True
        for server in self._servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        deadline = self.config.timeout_graceful_shutdown
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained(state), deadline)
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)

    @staticmethod
    async def _drained(state: ServerState) -> None:
        while state.tasks or state.connections:
            if state.tasks:
                await asyncio.wait(list(state.tasks))
            else:
                await asyncio.sleep(0.05)  # connections close on their own once idle


def _loop_factory(loop: str) -> Any:
    if loop == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise ConfigError("--loop uvloop: uvloop is not installed") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def serve(app: Any, config: Config) -> None:
    """Serve ``app`` (an ASGI callable or "module:attr") until asked to stop."""
    await Server(app, config).serve()


def run(app: Any, **options: Any) -> None:
    """Blocking entry point: ``caboose.run(app, host=..., port=...)``."""
    from caboose.logs import configure

    config = Config.from_options(**options)
    configure(config.log_level, access_log=config.access_log)
    logger.info("Started caboose %s [%d]", __version__, os.getpid())
    with asyncio.Runner(loop_factory=_loop_factory(config.loop)) as runner:
        runner.run(serve(app, config))
