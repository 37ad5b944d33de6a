"""A gunicorn worker class: ``gunicorn -k caboose.workers.CabooseWorker app:app``.

gunicorn stays the process manager (it binds, forks, reloads, recycles and kills on
``--timeout``); each of its workers runs one caboose ``Server`` on the sockets gunicorn bound,
with caboose's HTTP/1.1, HTTP/2 (h2c, and h2 over TLS through our own context with ALPN),
lifespan and graceful shutdown. docs/gunicorn.md maps gunicorn's settings to caboose's.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import fields
from typing import Any

from caboose import __version__
from caboose.cli import environment_options
from caboose.config import Config
from caboose.errors import ConfigError
from caboose.server import Server, run_worker
from caboose.transport.listen import describe
from caboose.transport.tls import server_context

try:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker
except ImportError as exc:  # pragma: no cover - the dev extra installs it
    raise ImportError("caboose.workers needs gunicorn: pip install 'caboose[gunicorn]'") from exc

logger = logging.getLogger("caboose.error")

MOST_FIELDS = 32768  # gunicorn's own ceiling for --limit-request-fields (0 there: no limit)
BEAT_EVERY = 1.0  # seconds between heartbeats at most (gunicorn's --timeout is in seconds)

# gunicorn settings, in the versions that have them, that mean what a caboose option means.
SAME_MEANING = {
    "root_path": "root_path",
    "asgi_loop": "loop",
    "asgi_lifespan": "lifespan",
    "asgi_disconnect_grace_period": "cancel_grace",
    "websocket_max_message_size": "ws_max_size",
    "http2_max_concurrent_streams": "http2_max_concurrent_streams",
    "http2_max_frame_size": "http2_max_frame_size",
    "http2_max_header_list_size": "http2_max_header_list_size",
}

# Settings caboose does not follow: a changed one is a warning, said once by the arbiter.
IGNORED = {
    "threads": "one event loop serves each worker's requests",
    "worker_connections": "not a limit here; CABOOSE_LIMIT_CONCURRENCY answers 503 above one",
    "secure_scheme_headers": "caboose reads X-Forwarded-Proto from --forwarded-allow-ips",
    "http_protocols": "caboose serves HTTP/1.1 and HTTP/2 (CABOOSE_HTTP2=off: HTTP/1.1 only)",
    "http2_initial_window_size": "set CABOOSE_HTTP2_STREAM_WINDOW instead",
}


def _default(option: str) -> Any:
    return next(f.default for f in fields(Config) if f.name == option)


def _changed(cfg: Any, name: str) -> bool:
    setting = cfg.settings.get(name)
    return setting is not None and setting.get() != type(setting)().get()


def _drain_seconds(graceful_timeout: float) -> float:
    """gunicorn SIGKILLs a worker ``graceful_timeout`` seconds after its SIGTERM: keep up to a
    second of that for cancelling what is left and for the lifespan shutdown."""
    return max(graceful_timeout - min(1.0, graceful_timeout / 2), 0.1)


def gunicorn_options(cfg: Any) -> dict[str, Any]:
    """The caboose options that say what these gunicorn settings say (docs/gunicorn.md)."""
    if cfg.keepalive <= 0:
        raise ConfigError(
            "gunicorn's --keep-alive must be positive (0, no keep-alive, is not supported)"
        )
    if _changed(cfg, "proxy_protocol"):
        raise ConfigError("gunicorn's --proxy-protocol is not supported")
    # caboose bounds a whole request head, not each field: let one field of gunicorn's size
    # fit with as much again for the rest.
    head = max(_default("limit_header_size"), 2 * cfg.limit_request_field_size)
    allowed = cfg.forwarded_allow_ips
    options: dict[str, Any] = {
        "backlog": cfg.backlog,
        "timeout_keep_alive": float(cfg.keepalive),
        "timeout_graceful_shutdown": _drain_seconds(cfg.graceful_timeout),
        "limit_request_line": cfg.limit_request_line or head,
        "limit_header_count": cfg.limit_request_fields or MOST_FIELDS,
        "limit_header_size": head,
        "http2_max_header_list_size": head,
        "forwarded_allow_ips": allowed if isinstance(allowed, str) else ",".join(allowed),
    }
    if cfg.certfile or cfg.keyfile:
        options.update(
            ssl_certfile=cfg.certfile,
            ssl_keyfile=cfg.keyfile,
            ssl_ca_certs=cfg.ca_certs,
            ssl_cert_reqs=str(int(cfg.cert_reqs)),
        )
        if cfg.ciphers:
            options["ssl_ciphers"] = cfg.ciphers
    if _changed(cfg, "access_log_format"):  # the same atoms (docs/configuration.md, Logging)
        options["access_log_format"] = cfg.access_log_format
    for setting, option in SAME_MEANING.items():
        if setting in cfg.settings:
            options[option] = cfg.settings[setting].get()
    return options


def worker_config(cfg: Any, max_requests: int | None) -> Config:
    """gunicorn's settings, then ``CABOOSE_<NAME>`` variables (``--env`` sets them too) on top:
    the more specific wins."""
    options = gunicorn_options(cfg)
    options["limit_max_requests"] = max_requests
    try:
        options.update(environment_options())
    except ConfigError as exc:
        raise ConfigError(f"CABOOSE_* environment: {exc}") from None
    return Config.from_options(**options)


class _ForwardTo(logging.Handler):
    """Hands caboose's records to one of gunicorn's loggers, so its handlers apply (console,
    file, syslog, a log config) and its SIGUSR1 reopening too."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def route_logs() -> None:
    """caboose.error goes to gunicorn's error log at its level; caboose.access to gunicorn's
    access log, and only when that has somewhere to write (as gunicorn's own access log). A
    caboose logger that a log config already gave handlers is left as it is."""
    error, access = logging.getLogger("gunicorn.error"), logging.getLogger("gunicorn.access")
    for name, target, enabled in (
        ("caboose.error", error, True),
        ("caboose.access", access, bool(access.handlers)),
    ):
        log = logging.getLogger(name)
        if log.handlers:
            continue
        log.handlers = [_ForwardTo(target)]
        log.propagate = False
        log.setLevel(target.getEffectiveLevel() if enabled else logging.CRITICAL + 1)


class CabooseWorker(Worker):  # type: ignore[misc]  # gunicorn has no type hints
    """One gunicorn worker process serving its app with caboose."""

    alive: bool  # gunicorn's: cleared when the worker is to stop
    server: Server | None = None

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Run once by the arbiter: a setting caboose cannot take stops gunicorn at once with
        one line (gunicorn prints a RuntimeError as "Error: ..."), instead of N workers failing."""
        for name, why in IGNORED.items():
            if _changed(cfg, name):
                log.warning("CabooseWorker ignores gunicorn's %s: %s", name, why)
        try:
            server_context(worker_config(cfg, None))  # the TLS files load, too
        except ConfigError as exc:
            raise RuntimeError(f"CabooseWorker: {exc}") from None

    def run(self) -> None:
        if not self.alive:  # told to stop while the app was loading
            return
        route_logs()
        limit = self.max_requests if self.cfg.max_requests > 0 else None
        try:
            config = worker_config(self.cfg, limit)
        except ConfigError as exc:
            logger.error("%s", exc)
            raise SystemExit(Arbiter.APP_LOAD_ERROR) from None
        sockets = [listener.sock for listener in self.sockets]
        self.server = Server(
            self.wsgi,
            config,
            sockets,
            on_ready=self._ready,
            quiet_listen=True,
            handle_signals=False,
        )
        run_worker(
            self.server,
            signals={
                signal.SIGTERM: self._graceful,
                signal.SIGQUIT: self._quick,
                signal.SIGINT: self._quick,
                signal.SIGUSR1: self.log.reopen_files,
            },
            beat=self._beat,
            interval=min(BEAT_EVERY, self.timeout / 2) if self.timeout > 0 else BEAT_EVERY,
            load_error=Arbiter.APP_LOAD_ERROR,
            startup_error=Arbiter.WORKER_BOOT_ERROR,
        )

    def _ready(self) -> None:
        assert self.server is not None
        for sock in self.server.sockets:
            where = describe(self.server.config, sock)
            logger.info("caboose %s serving %s [%d]", __version__, where, os.getpid())

    def _beat(self) -> None:
        """From the event loop: tell the arbiter we live; leave if it asked us (``alive`` is
        cleared by --reload's watcher too) or if it died."""
        self.notify()
        assert self.server is not None
        if self.alive and self.ppid != os.getppid():
            logger.info("The arbiter [%d] went away: shutting down", self.ppid)
            self.alive = False
        if not self.alive:
            self.server.request_exit()

    def _graceful(self) -> None:
        """SIGTERM: finish what is in flight (gunicorn sends it once; a repeat changes nothing)."""
        self.alive = False
        assert self.server is not None
        self.server.request_exit()

    def _quick(self) -> None:
        """SIGQUIT / SIGINT: stop at once, as gunicorn's own workers do."""
        assert self.server is not None
        if self.server.forced:  # the arbiter's SIGQUIT after a terminal's SIGINT
            return
        self.alive = False
        self.cfg.worker_int(self)
        logger.info("Quick shutdown: cancelling what is in flight")
        self.server.stop_now()
