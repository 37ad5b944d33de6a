"""The server: listeners, lifespan, default headers, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Any, NoReturn

from caboose import __version__
from caboose.asgi.lifespan import Lifespan, LifespanFailure
from caboose.config import Config
from caboose.errors import AppLoadError, ConfigError
from caboose.importer import import_app, load_app
from caboose.logs import configure
from caboose.metrics import Exporter, loop_reader
from caboose.transport.access import Ended, Logged, access_log
from caboose.transport.listen import bind, describe
from caboose.transport.metrics import Metrics
from caboose.transport.negotiate import Negotiator
from caboose.transport.state import ServerState
from caboose.transport.tls import server_context

logger = logging.getLogger("caboose.error")


class Server:
    """Serve one app; ``started`` is set once listening, ``request_exit()`` stops it."""

    def __init__(
        self,
        app: Any,
        config: Config,
        sockets: list[socket.socket] | None = None,
        *,
        on_ready: Callable[[], None] | None = None,
        quiet_listen: bool = False,
        handle_signals: bool = True,
        export_metrics: bool = True,
    ) -> None:
        """``sockets``: already listening (a supervisor's workers share them); else bound
        from ``config`` when serving starts. ``on_ready`` is called once serving.
        ``handle_signals=False``: the owner installs its own (``run_worker``).
        ``export_metrics``: serve --metrics-port here (a worker's supervisor does instead)."""
        self.config = config
        self.app_source = app
        self.started = threading.Event()
        self.on_ready = on_ready
        self.quiet_listen = quiet_listen
        self.handle_signals = handle_signals
        self.export_metrics = export_metrics
        self.state: ServerState | None = None  # once serving
        self.metrics_port: int | None = None  # the bound --metrics-port (it may be 0)
        self.forced = False  # a second signal: stop at once
        self.inherited = sockets or []
        self.sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
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

    def stop_now(self) -> None:
        """Stop at once: in-flight requests are cancelled and the lifespan shutdown skipped
        (a second signal; gunicorn's or our supervisor's SIGQUIT). Safe from any thread or a
        signal handler."""
        if not self.forced and self._exit is not None and not self._exit.is_set():
            logger.warning("Told to stop at once: not waiting for requests")
        self.forced = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        assert self._exit is not None and self._forced is not None
        self._exit.set()
        self._forced.set()

    def on_stop_signal(self) -> None:
        """The first SIGINT/SIGTERM shuts down gracefully; a second one stops at once."""
        assert self._exit is not None
        if not self._exit.is_set():
            self.request_exit()
        elif not self.forced:
            logger.warning("Second signal: stopping at once, without waiting for requests")
            self.stop_now()

    async def serve(self) -> None:
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        self._forced = asyncio.Event()
        app = load_app(self.app_source, factory=config.factory, app_dir=config.app_dir)
        ssl_context = server_context(config)
        state = ServerState(config=config, app=app, trusted_proxies=config.trusted_proxies())
        if config.metrics_port is not None:
            state.metrics = Metrics()
        state.ended = observe_exchanges(config, state.metrics)
        self.state = state
        if config.limit_max_requests is not None:
            jitter = random.randint(0, config.limit_max_requests_jitter)
            state.requests_left = config.limit_max_requests + jitter
            state.exhausted = self._max_requests
        lifespan = Lifespan(app, config.lifespan, state.lifespan_state)
        await lifespan.startup()
        try:
            await self._run(state, ssl_context)
        finally:
            if not self.forced:
                await lifespan.shutdown()
        logger.info("Finished server process [%d]", os.getpid())

    def _max_requests(self) -> None:
        logger.info("Reached --limit-max-requests: shutting down gracefully")
        self.request_exit()

    async def _run(self, state: ServerState, ssl_context: Any) -> None:
        assert self._loop is not None and self._exit is not None
        clock = self._loop.create_task(self._refresh_headers(state))
        exporter = None
        try:
            await self._listen(state, ssl_context)
            if state.metrics is not None and self.export_metrics:
                exporter = self._export(state)
            # Everything alive now (the app, its imports, our tables) lives as long as the
            # server: move it out of the collector's sight, so the full collections that
            # request churn triggers scan only young objects instead of the whole heap.
            gc.freeze()
            self._install_signal_handlers()
            self.started.set()
            if self.on_ready is not None:
                self.on_ready()
            await self._exit.wait()
            await self._shutdown(state)
        finally:
            clock.cancel()
            for server in self._servers:
                server.close()
            if exporter is not None:
                exporter.stop()

    def _export(self, state: ServerState) -> Exporter:
        assert state.metrics is not None and self._loop is not None
        config = self.config
        assert config.metrics_port is not None
        read = loop_reader(state.metrics, state.connections, self._loop)
        exporter = Exporter(config.metrics_host, config.metrics_port, read)
        self.metrics_port = exporter.port
        return exporter

    async def _listen(self, state: ServerState, ssl_context: Any) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> Negotiator:
            return Negotiator(state)

        # A supervisor binds once for all its workers; alone, the server binds here.
        self.sockets = self.inherited or bind(self.config)
        # The event loop calls listen() again on every socket it serves, with this backlog
        # (asyncio's default would be 100): --backlog holds for --uds and --fd sockets too.
        backlog = self.config.backlog
        for sock in self.sockets:
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(
                    factory, sock=sock, ssl=ssl_context, backlog=backlog
                )
            else:
                server = await loop.create_server(
                    factory, sock=sock, ssl=ssl_context, backlog=backlog
                )
            self._servers.append(server)
        if not self.quiet_listen:  # a supervisor's workers: it said where, once
            for sock in self.sockets:
                where = describe(self.config, sock)
                logger.info("caboose running on %s (Press CTRL+C to quit)", where)

    def _install_signal_handlers(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return  # embedded (tests, threads, workers): the owner calls request_exit()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.on_stop_signal)

    async def _refresh_headers(self, state: ServerState) -> None:
        """Keep the shared Server/Date fields current; the core never reads a clock."""
        extra = self.config.extra_headers()  # --header
        ours = [(b"server", b"caboose")] if self.config.server_header else []
        server = [field for field in ours if field[0] not in {name for name, _ in extra}]
        while True:
            date = [(b"date", formatdate(usegmt=True).encode())] if self.config.date_header else []
            state.default_headers[:] = server + date + extra
            await asyncio.sleep(1.0)

    async def _shutdown(self, state: ServerState) -> None:
        """Stop accepting, let in-flight requests finish up to the graceful timeout, close."""
        logger.info("Shutting down")
        for server in self._servers:
            server.close()
        for sock in self.sockets:
            # uvloop's server does not close a socket it was given: without this the kernel
            # would go on completing handshakes into a backlog that nobody accepts from. (A
            # worker closes only its copy; the supervisor's keeps the port open.)
            sock.close()
        if self.config.uds is not None and not self.inherited:
            with contextlib.suppress(OSError):  # alone, the socket file is ours to remove
                os.unlink(self.config.uds)
        for connection in list(state.connections):
            connection.shutdown()
        deadline = self.config.timeout_graceful_shutdown
        assert self._forced is not None
        drained = asyncio.ensure_future(self._drained(state))
        forced = asyncio.ensure_future(self._forced.wait())
        await asyncio.wait([drained, forced], timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        forced.cancel()
        if state.tasks:
            why = "on a second signal" if self.forced else "after --timeout-graceful-shutdown"
            logger.warning("Cancelling %d unfinished request(s) %s", len(state.tasks), why)
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()  # what is still open after the grace is cut, not awaited

    @staticmethod
    async def _drained(state: ServerState) -> None:
        while state.tasks or state.connections:
            if state.tasks:
                await asyncio.wait(list(state.tasks))
            else:
                await asyncio.sleep(0.05)  # connections close on their own once idle


def loop_factory(loop: str) -> Any:
    if loop == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise ConfigError("--loop uvloop: uvloop is not installed") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_worker(
    server: Server,
    *,
    signals: Mapping[int, Callable[[], None]],
    beat: Callable[[], None],
    interval: float,
    load_error: int,
    startup_error: int,
    report: Callable[[str], bool] | None = None,
) -> None:
    """A worker process's life (ours or gunicorn's): serve on a fresh event loop with these
    signal handlers, calling ``beat()`` from the loop every ``interval`` seconds, so a loop
    that stops turning stops beating. An app that cannot load (or a bad setting) exits with
    ``load_error``, a failed lifespan startup with ``startup_error``; a failed lifespan
    shutdown with 1. Why is logged, or handed to ``report`` before serving when there is one
    (a supervisor says it once for all its workers; it returns False if it cannot)."""

    def failed(message: str, status: int) -> NoReturn:
        told = report is not None and not server.started.is_set() and report(message)
        if not told:
            logger.error("%s", message)
        raise SystemExit(status)

    try:
        with asyncio.Runner(loop_factory=loop_factory(server.config.loop)) as runner:
            runner.run(_serve_beating(server, signals, beat, interval))
    except AppLoadError as exc:
        failed(f"{exc.traceback}{exc}", load_error)  # the app's own traceback, if any
    except ConfigError as exc:
        failed(str(exc), load_error)
    except LifespanFailure as exc:
        if server.started.is_set():
            failed(f"application shutdown failed: {exc}", 1)
        failed(f"application startup failed: {exc}", startup_error)


async def _serve_beating(
    server: Server,
    signals: Mapping[int, Callable[[], None]],
    beat: Callable[[], None],
    interval: float,
) -> None:
    loop = asyncio.get_running_loop()
    # Installed before serve() suspends for the first time, when request_exit() works.
    for signum, handler in signals.items():
        loop.add_signal_handler(signum, handler)

    async def beating() -> None:
        while True:
            beat()
            await asyncio.sleep(interval)

    heart = loop.create_task(beating())
    try:
        await server.serve()
    finally:
        heart.cancel()


def observe_exchanges(config: Config, metrics: Metrics | None) -> Ended | None:
    """What runs as each exchange ends: the access log, the metrics, both, or nothing (then
    the drivers skip the call altogether)."""
    log = access_log(config.access_log_format) if config.access_log else None
    count = metrics.ended if metrics is not None else None
    if log is None or count is None:
        return log or count

    def both(stream: Logged, outcome: str) -> None:
        log(stream, outcome)
        count(stream, outcome)

    return both


async def serve(app: Any, config: Config) -> None:
    """Serve ``app`` (an ASGI callable or "module:attr") until asked to stop. Logging is set
    up as the command line does (``caboose.logs.configure``) unless
    ``config.configure_logging`` is false."""
    configure(config)
    await Server(app, config).serve()


def run(app: Any, **options: Any) -> None:
    """Blocking entry point: ``caboose.run(app, host=..., port=...)``, with the options of
    the command line; logging is set up as there unless ``configure_logging=False``."""
    config = Config.from_options(**options)
    if config.env_file is not None:  # before the app is imported: it may read them
        from caboose import envfile

        envfile.load(config.env_file)
    configure(config)
    if not config.reload and (
        config.reload_dirs or config.reload_includes or config.reload_excludes
    ):
        logger.warning("--reload-dir, --reload-include and --reload-exclude need --reload")
    if config.workers > 1 or config.reload:
        flag = "--reload" if config.reload else "--workers"
        if not isinstance(app, str):
            raise ConfigError(f"{flag} needs the app as an import string (MODULE:ATTRIBUTE)")
        from caboose.reload import require_watchfiles
        from caboose.supervisor import Supervisor

        if config.reload:
            require_watchfiles()

        status = Supervisor(app, config).run()
        if status:
            raise SystemExit(status)
        return
    # Import first: an app that cannot load must not follow a "Started" line.
    app = import_app(app, config.app_dir)
    logger.info("Started caboose %s [%d]", __version__, os.getpid())
    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        runner.run(serve(app, config))
