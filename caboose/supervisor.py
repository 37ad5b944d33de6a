"""Worker processes: ``--workers N``.

The supervisor binds the sockets once and starts N workers (``spawn``: fresh interpreters,
nothing inherited but the sockets) that accept from them. It never touches a request. Each
worker reports over a pipe: ``ready`` once serving, then a heartbeat every second from its
event loop, so a loop that stops turning is noticed.

- The first worker boots alone and the others follow once it serves; "Started" and the
  listening line come then, so an app that cannot start says why once, before either.
- A worker that exits with an error status before it was ready failed at start-up (import
  error, lifespan failure): the whole server stops with that status, instead of a crash
  loop. It sent why over the pipe, and the supervisor says it once. (One killed by a
  signal meanwhile is a crash, below.)
- A worker that dies later, or misses its heartbeat for ``--timeout-worker-healthcheck``, is
  replaced, after a back-off that doubles with each recent crash; more than
  ``RESTART_BUDGET`` crashes in ``RESTART_WINDOW`` seconds stop the server.
- A worker that exits by itself with status 0 reached ``--limit-max-requests``: it is
  replaced at once (its successor is already starting while it drains).
- SIGTERM / SIGINT: every worker is told SIGTERM and shuts down gracefully; a second
  SIGINT or SIGTERM makes the supervisor tell them SIGQUIT: stop at once. A worker takes no
  other signal as "now", so a SIGTERM sent to the whole group (systemd) still drains.
- SIGHUP: rolling reload. New workers start; each one that is ready retires an old one, so
  the sockets are served throughout. If the new code cannot start, the reload is abandoned
  and the workers still serving go on.
- SIGTTIN / SIGTTOU: one worker more / fewer.
- ``--reload`` (development): a thread watches the source (caboose/reload.py) and queues a
  change like a signal; a change, or SIGHUP, then retires every worker at once, so what
  answers next is the new code (connections wait in the backlog meanwhile). A start-up
  failure or a crash loop does not stop the server then: it says why once and waits for
  the next change.
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

from caboose import __version__
from caboose.config import Config
from caboose.metrics import Exporter, WorkerTotals
from caboose.reload import Watcher
from caboose.transport.listen import bind, describe

logger = logging.getLogger("caboose.error")

HEARTBEAT = 1.0  # seconds between a worker's heartbeats
RESTART_BUDGET = 5  # crashes ...
RESTART_WINDOW = 60.0  # ... within this many seconds stop the server
STOP_MARGIN = 5.0  # seconds past --timeout-graceful-shutdown before a worker is killed
_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
CHANGED = -1  # not a signal: the --reload watcher saw a change, queued among the signals


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    pipe: Connection
    generation: int
    last_beat: float
    ready: bool = False
    retiring: float | None = None  # when it was told to stop
    failure: str | None = None  # why it could not start, as it reported

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
    started: bool = False  # a worker has been ready: the app can start
    waiting: bool = False  # --reload: the code cannot serve; no worker until it changes
    totals: WorkerTotals = field(default_factory=WorkerTotals)  # --metrics-port

    def run(self) -> int:
        config = self.config
        self.target = config.workers
        watcher = Watcher(config, self.changed) if config.reload else None
        sockets = bind(config)
        self.sockets = sockets
        exporter = None
        self.context = multiprocessing.get_context("spawn")
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        self.wake = wake_write
        previous = signal.set_wakeup_fd(wake_write.fileno())
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in _HANDLED}
        try:
            if config.metrics_port is not None:
                exporter = Exporter(config.metrics_host, config.metrics_port, self.totals.read)
            if watcher is not None:
                watcher.start()
            self._announce(watcher is not None)
            while not (self.stopping and not self.workers):
                self._spawn_missing()
                self._wait(wake_read)
                self._handle_signals()
                self._check_health()
        finally:
            if watcher is not None:
                watcher.stop()
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
        what = "reloader" if self.config.reload else "supervisor"
        logger.info("Stopped %s process [%d]", what, os.getpid())
        return self.exit_status

    def _announce(self, reloading: bool) -> None:
        """The reloader says where at once (the code may be broken until the next save);
        workers alone wait for the first one to serve (``_started``)."""
        if reloading:
            self._say_where()
            logger.info("Started reloader process [%d] using WatchFiles", os.getpid())
        else:
            logger.info("Supervisor [%d] booting %s", os.getpid(), _workers(self.target))

    def _say_where(self) -> None:
        for sock in self.sockets:
            where = describe(self.config, sock)
            logger.info(
                "caboose running on %s with %s (Press CTRL+C to quit)",
                where,
                _workers(self.target),
            )

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.pending.append(signum)

    def changed(self) -> None:
        """The watcher's thread saw a change: queue it with the signals and wake the loop."""
        self.pending.append(CHANGED)
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self.wake.send(b"\0")

    def _handle_signals(self) -> None:
        while self.pending:
            signum = self.pending.popleft()
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._stop(forced=self.stopping)
            elif self.stopping:
                continue
            elif signum in (signal.SIGHUP, CHANGED):
                self._reload(signum)
            elif signum == signal.SIGTTIN:
                self.target += 1
                logger.info("SIGTTIN: %d workers", self.target)
            elif signum == signal.SIGTTOU and self.target > 1:
                self.target -= 1
                logger.info("SIGTTOU: %d workers", self.target)
                self._retire(self._current()[-1:])

    def _reload(self, signum: int) -> None:
        """A new generation of workers. Alone, each new one that is ready retires an old one
        (``_ready``), so the sockets are served throughout; with --reload the old ones go at
        once, so that nothing but the new code answers from now on."""
        self.generation += 1
        self.waiting = False  # new code deserves a new start, at once
        self.next_start = 0.0
        self.crashes.clear()
        if self.config.reload:
            if signum == signal.SIGHUP:
                logger.info("SIGHUP: restarting %d workers", self.target)
            self._retire([w for w in self.workers if w.generation < self.generation])
        else:
            logger.info("SIGHUP: starting %d new workers, then retiring the old", self.target)

    def _stop(self, *, forced: bool) -> None:
        if forced:
            logger.warning("Second signal: the workers stop at once")
        elif self.workers:
            logger.info("Shutting down %s", _workers(len(self.workers)))
        self.stopping = True
        for sock in self.sockets:
            sock.close()  # new connections are refused now, not queued for nobody
        for worker in self.workers:
            self._signal(worker, signal.SIGQUIT if forced else signal.SIGTERM)
            if worker.retiring is None:
                worker.retiring = time.monotonic()

    # -- workers -------------------------------------------------------------------------------

    def _current(self) -> list[Worker]:
        """Workers of this generation that are not on their way out."""
        return [w for w in self.workers if w.generation == self.generation and w.retiring is None]

    def _spawn_missing(self) -> None:
        if self.stopping or self.waiting or time.monotonic() < self.next_start:
            return
        missing = self.target - len(self._current())
        if not self.started:
            # The first worker boots alone: an app that cannot start says why once, not once
            # per worker, and the others follow as soon as it serves.
            missing = min(missing, 1 - len(self.workers))
        for _ in range(missing):
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
                if isinstance(message, tuple) and message[0] == "failed":
                    worker.failure = message[1]
                elif isinstance(message, tuple):  # ("metrics", snapshot), with each beat
                    self.totals.report(worker.pid, message[1])
                elif message == "ready" and not worker.ready:
                    worker.ready = True
                    logger.info("Worker [%s] serving", worker.process.pid)
                    if not self.started:
                        self._started()
                    self._ready(worker)
                    self._count_workers()

    def _count_workers(self) -> None:
        self.totals.workers = sum(1 for w in self.workers if w.ready and w.retiring is None)

    def _started(self) -> None:
        """The first worker serves: the app starts, so say where it is served."""
        self.started = True
        logger.info("Started caboose %s [%d]", __version__, os.getpid())
        if not self.config.reload:
            self._say_where()

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
            self._failed_to_start(worker, code)
            return
        if code == 0:  # --limit-max-requests: it finished on its own
            return
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        self._crashed(f"Worker [{worker.process.pid}] died ({how})")

    def _failed_to_start(self, worker: Worker, code: int) -> None:
        """Said once: the other workers of its generation fail alike, and a crash loop helps
        nobody. Alone the server stops, unless a SIGHUP brought the new code and the old
        workers still serve: they go on. With --reload it waits for a change."""
        if self.waiting or worker.generation != self.generation:
            return  # said already, or superseded (or abandoned) code
        if worker.failure is not None:
            logger.error("%s", worker.failure)
        what = f"Worker [{worker.process.pid}] failed to start (exit status {code})"
        if self.config.reload:
            logger.error("%s: waiting for a change to reload", what)
            self.waiting = True
            return
        previous = [
            w
            for w in self.workers
            if w.generation < worker.generation and w.ready and w.retiring is None
        ]
        if previous:
            # The workers that serve keep the code they imported; any new one would import
            # the broken code again, so the ones retired meanwhile are not replaced.
            logger.error("%s: the reload is abandoned, the running workers go on", what)
            self._retire([w for w in self.workers if w.generation == worker.generation])
            self.generation = max(w.generation for w in previous)
            self.target = min(self.target, len(previous))
            return
        logger.error("%s: stopping", what)
        self.exit_status = code
        self._stop(forced=False)

    def _crashed(self, what: str) -> None:
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > RESTART_WINDOW:
            self.crashes.popleft()
        if len(self.crashes) > RESTART_BUDGET:
            then = "waiting for a change to reload" if self.config.reload else "stopping"
            logger.error(
                "%s: %d crashes in %.0f s, %s", what, len(self.crashes), RESTART_WINDOW, then
            )
            if self.config.reload:
                self.waiting = True
                return
            self.exit_status = 1
            self._stop(forced=False)
            return
        delay = min(0.1 * 2 ** (len(self.crashes) - 1), 5.0)
        self.next_start = now + delay
        logger.warning("%s: starting another in %.1f s", what, delay)

    def _check_health(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_worker_healthcheck
        graceful = self.config.timeout_graceful_shutdown
        grace = float("inf") if graceful is None else graceful + STOP_MARGIN
        for worker in self.workers:
            if worker.retiring is not None:
                # Draining, it still beats: one that ignored SIGTERM too long or whose loop
                # stopped turning is killed.
                if now - worker.retiring > grace or now - worker.last_beat > timeout:
                    self._signal(worker, signal.SIGKILL)
            elif worker.ready and now - worker.last_beat > timeout:
                self._signal(worker, signal.SIGKILL)
                worker.retiring = now
                self._crashed(
                    f"Worker [{worker.process.pid}] missed its heartbeat for {timeout:.0f} s"
                )


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def worker_main(app: str, config: Config, sockets: list[socket.socket], pipe: Connection) -> None:
    """One worker: serve on the inherited sockets, report readiness and heartbeats."""
    from caboose.cli import EXIT_ERROR, EXIT_STARTUP_FAILED
    from caboose.logs import configure
    from caboose.server import Server, run_worker

    # Ctrl-C reaches every process of the terminal's group: the supervisor decides. SIGTERM
    # may come twice, from the supervisor and from whoever signalled the whole group
    # (systemd's KillMode=control-group, `kill -- -PGID`): both mean "drain". Only the
    # supervisor's SIGQUIT means "now".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure(config)  # as the supervisor did: spawned workers inherit no logging set-up
    logger.info("Booting worker [%d]", os.getpid())
    server = Server(
        app,
        config,
        sockets,
        on_ready=lambda: pipe.send("ready"),
        quiet_listen=True,
        handle_signals=False,
        export_metrics=False,  # the supervisor serves the sum of its workers'
    )

    def report() -> None:
        """What this worker counted, for the supervisor's /metrics (--metrics-port)."""
        state = server.state
        if state is not None and state.metrics is not None:
            pipe.send(("metrics", state.metrics.snapshot(list(state.connections))))

    def beat() -> None:
        pipe.send("beat")
        report()

    run_worker(
        server,
        signals={signal.SIGTERM: server.request_exit, signal.SIGQUIT: server.stop_now},
        beat=beat,
        interval=HEARTBEAT,
        load_error=EXIT_ERROR,
        startup_error=EXIT_STARTUP_FAILED,
        report=lambda message: _tell(pipe, ("failed", message)),
    )
    with contextlib.suppress(OSError):
        report()  # the last numbers, up to its final exchange


def _tell(pipe: Connection, message: object) -> bool:
    try:
        pipe.send(message)
    except OSError:  # the supervisor is gone
        return False
    return True
