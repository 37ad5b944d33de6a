"""Worker processes: ``--workers N``.

The supervisor binds the sockets once and starts N workers (``spawn``: fresh interpreters,
nothing inherited but the sockets) that accept from them. It never touches a request. Each
worker reports over a pipe: ``ready`` once serving, then a heartbeat every second from its
event loop, so a loop that stops turning is noticed.

- A worker that exits with an error status before it was ready failed at start-up (import
  error, lifespan failure): the whole server stops with that status, instead of a crash
  loop; the worker printed why. (One killed by a signal meanwhile is a crash, below.)
- A worker that dies later, or misses its heartbeat for ``--timeout-worker-healthcheck``, is
  replaced, after a back-off that doubles with each recent crash; more than
  ``RESTART_BUDGET`` crashes in ``RESTART_WINDOW`` seconds stop the server.
- A worker that exits by itself with status 0 reached ``--limit-max-requests``: it is
  replaced at once (its successor is already starting while it drains).
- SIGTERM / SIGINT: every worker is told SIGTERM and shuts down gracefully; a second
  SIGINT or SIGTERM is passed on too, which makes the workers stop at once.
- SIGHUP: rolling reload. New workers start; each one that is ready retires an old one, so
  the sockets are served throughout.
- SIGTTIN / SIGTTOU: one worker more / fewer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from caboose.config import Config
from caboose.metrics import Exporter, WorkerTotals
from caboose.transport.listen import bind, describe

logger = logging.getLogger("caboose.error")

HEARTBEAT = 1.0  # seconds between a worker's heartbeats
RESTART_BUDGET = 5  # crashes ...
RESTART_WINDOW = 60.0  # ... within this many seconds stop the server
STOP_MARGIN = 5.0  # seconds past --timeout-graceful-shutdown before a worker is killed
_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    pipe: Connection
    generation: int
    last_beat: float
    ready: bool = False
    retiring: float | None = None  # when it was told to stop

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@dataclass
class Supervisor:
    app: str
    config: Config
    workers: list[Worker] = field(default_factory=list)
    pending: deque[int] = field(default_factory=deque)  # signals received, in order
    crashes: deque[float] = field(default_factory=deque)
    generation: int = 0
    stopping: bool = False
    exit_status: int = 0
    next_start: float = 0.0  # no new worker before this time (crash back-off)
    totals: WorkerTotals = field(default_factory=WorkerTotals)  # --metrics-port

    def run(self) -> int:
        config = self.config
        self.target = config.workers
        sockets = bind(config)
        self.sockets = sockets
        exporter = None
        self.context = multiprocessing.get_context("spawn")
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous = signal.set_wakeup_fd(wake_write.fileno())
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in _HANDLED}
        try:
            if config.metrics_port is not None:
                exporter = Exporter(config.metrics_host, config.metrics_port, self.totals.read)
            for sock in sockets:
                logger.info(
                    "caboose running on %s with %d workers", describe(config, sock), self.target
                )
            logger.info("Started supervisor process [%d]", os.getpid())
            while not (self.stopping and not self.workers):
                self._spawn_missing()
                self._wait(wake_read)
                self._handle_signals()
                self._check_health()
        finally:
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_read.close()
            wake_write.close()
            if exporter is not None:
                exporter.stop()
            for sock in sockets:
                sock.close()
            if config.uds is not None:
                with contextlib.suppress(OSError):
                    os.unlink(config.uds)
        logger.info("Stopped supervisor process [%d]", os.getpid())
        return self.exit_status

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.pending.append(signum)

    def _handle_signals(self) -> None:
        while self.pending:
            signum = self.pending.popleft()
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._stop(forced=self.stopping)
            elif self.stopping:
                continue
            elif signum == signal.SIGHUP:
                self.generation += 1
                logger.info("SIGHUP: starting %d new workers, then retiring the old", self.target)
            elif signum == signal.SIGTTIN:
                self.target += 1
                logger.info("SIGTTIN: %d workers", self.target)
            elif signum == signal.SIGTTOU and self.target > 1:
                self.target -= 1
                logger.info("SIGTTOU: %d workers", self.target)
                self._retire(self._current()[-1:])

    def _stop(self, *, forced: bool) -> None:
        if forced:
            logger.warning("Second signal: the workers stop at once")
        else:
            logger.info("Shutting down %d workers", len(self.workers))
        self.stopping = True
        for sock in self.sockets:
            sock.close()  # new connections are refused now, not queued for nobody
        for worker in self.workers:
            self._signal(worker, signal.SIGTERM)
            if worker.retiring is None:
                worker.retiring = time.monotonic()

    # -- workers -------------------------------------------------------------------------------

    def _current(self) -> list[Worker]:
        """Workers of this generation that are not on their way out."""
        return [w for w in self.workers if w.generation == self.generation and w.retiring is None]

    def _spawn_missing(self) -> None:
        if self.stopping or time.monotonic() < self.next_start:
            return
        for _ in range(self.target - len(self._current())):
            self._spawn()

    def _spawn(self) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=worker_main,
            args=(self.app, self.config, self.sockets, child),
            name="caboose-worker",
        )
        process.start()
        child.close()
        self.workers.append(Worker(process, parent, self.generation, time.monotonic()))

    def _retire(self, workers: list[Worker]) -> None:
        for worker in workers:
            if worker.retiring is None:
                worker.retiring = time.monotonic()
                self._signal(worker, signal.SIGTERM)

    @staticmethod
    def _signal(worker: Worker, signum: int) -> None:
        pid = worker.process.pid
        if pid is not None and worker.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait(self, wake: socket.socket) -> None:
        handles: list[Any] = [wake]
        for worker in self.workers:
            handles += [worker.pipe, worker.process.sentinel]
        for handle in wait(handles, timeout=HEARTBEAT):
            if handle is wake:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
        now = time.monotonic()
        for worker in list(self.workers):
            self._read(worker, now)
            if worker.process.exitcode is not None:
                self._exited(worker)

    def _read(self, worker: Worker, now: float) -> None:
        with contextlib.suppress(EOFError, OSError):
            while worker.pipe.poll():
                message = worker.pipe.recv()
                worker.last_beat = now
                if isinstance(message, tuple):  # ("metrics", snapshot), with each beat
                    self.totals.report(worker.pid, message[1])
                elif message == "ready" and not worker.ready:
                    worker.ready = True
                    logger.info("Worker [%s] serving", worker.process.pid)
                    self._ready(worker)
                    self._count_workers()

    def _count_workers(self) -> None:
        self.totals.workers = sum(1 for w in self.workers if w.ready and w.retiring is None)

    def _ready(self, worker: Worker) -> None:
        """A new worker serves: during a reload, one old one may go."""
        old = [w for w in self.workers if w.generation < worker.generation and w.retiring is None]
        self._retire(old[:1])

    def _exited(self, worker: Worker) -> None:
        self.workers.remove(worker)
        worker.pipe.close()
        self.totals.retire(worker.pid)
        self._count_workers()
        code = worker.process.exitcode
        assert code is not None
        if worker.retiring is not None or self.stopping:
            return
        if not worker.ready and code > 0:  # it exited on its own: the app cannot start
            logger.error(
                "Worker [%s] failed to start (exit status %d): stopping", worker.process.pid, code
            )
            self.exit_status = code
            self._stop(forced=False)
            return
        if code == 0:  # --limit-max-requests: it finished on its own
            return
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        self._crashed(f"Worker [{worker.process.pid}] died ({how})")

    def _crashed(self, what: str) -> None:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > RESTART_WINDOW:
            self.crashes.popleft()
        if len(self.crashes) > RESTART_BUDGET:
            logger.error(
                "%s: %d crashes in %.0f s, stopping", what, len(self.crashes), RESTART_WINDOW
            )
            self.exit_status = 1
            self._stop(forced=False)
            return
        delay = min(0.1 * 2 ** (len(self.crashes) - 1), 5.0)
        self.next_start = now + delay
        logger.warning("%s: starting another in %.1f s", what, delay)

    def _check_health(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_worker_healthcheck
        grace = self.config.timeout_graceful_shutdown + STOP_MARGIN
        for worker in self.workers:
            if worker.retiring is not None:
                if now - worker.retiring > grace:
                    self._signal(worker, signal.SIGKILL)  # it ignored SIGTERM for too long
            elif worker.ready and now - worker.last_beat > timeout:
                self._signal(worker, signal.SIGKILL)
                worker.retiring = now
                self._crashed(
                    f"Worker [{worker.process.pid}] missed its heartbeat for {timeout:.0f} s"
                )


def worker_main(app: str, config: Config, sockets: list[socket.socket], pipe: Connection) -> None:
    """One worker: serve on the inherited sockets, report readiness and heartbeats."""
    import asyncio

    from caboose.asgi.lifespan import LifespanFailure
    from caboose.errors import AppLoadError, ConfigError
    from caboose.logs import configure
    from caboose.server import Server, loop_factory

    # Ctrl-C reaches every process of the terminal's group: the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure(config)  # as the supervisor did: spawned workers inherit no logging set-up
    logger.info("Started worker process [%d]", os.getpid())
    beating: list[asyncio.Task[None]] = []

    def report() -> None:
        """What this worker counted, for the supervisor's /metrics (--metrics-port)."""
        state = server.state
        if state is not None and state.metrics is not None:
            pipe.send(("metrics", state.metrics.snapshot(list(state.connections))))

    async def beat() -> None:
        while True:
            pipe.send("beat")
            report()
            await asyncio.sleep(HEARTBEAT)

    def ready() -> None:
        pipe.send("ready")
        beating.append(asyncio.get_running_loop().create_task(beat()))

    server = Server(app, config, sockets, on_ready=ready, quiet_listen=True, export_metrics=False)
    try:
        with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
            runner.run(server.serve())
        with contextlib.suppress(OSError):
            report()  # the last numbers, up to its final exchange
    except (AppLoadError, ConfigError) as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    except LifespanFailure as exc:
        logger.error("application startup failed: %s", exc)
        raise SystemExit(3) from None
    finally:
        for task in beating:
            task.cancel()
