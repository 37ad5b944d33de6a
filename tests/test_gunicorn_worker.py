"""How CabooseWorker reads gunicorn's settings (docs/gunicorn.md), without a process."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config as GunicornConfig

from caboose.errors import ConfigError
from caboose.workers import IGNORED, SAME_MEANING, CabooseWorker, route_logs, worker_config


def gunicorn_cfg(**settings: Any) -> Any:
    cfg = GunicornConfig()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


@pytest.fixture(autouse=True)
def no_caboose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CABOOSE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def test_gunicorns_defaults() -> None:
    config = worker_config(gunicorn_cfg(), None)
    assert config.timeout_keep_alive == 2.0  # gunicorn's --keep-alive
    assert config.timeout_graceful_shutdown == 29.0  # a second before gunicorn's SIGKILL
    assert config.limit_request_line == 4094
    assert config.limit_header_count == 100
    assert config.limit_header_size == 65536  # holds a field of 8190 bytes and the rest
    assert config.forwarded_allow_ips == "127.0.0.1,::1"
    assert config.backlog == 2048
    assert config.limit_max_requests is None and config.limit_max_requests_jitter == 0
    assert not config.is_tls and config.http2  # h2c whatever gunicorn's --http-protocols


def test_changed_settings_carry_over() -> None:
    cfg = gunicorn_cfg(
        keepalive=7,
        graceful_timeout=1,
        limit_request_line=0,  # gunicorn: no limit
        limit_request_fields=0,
        limit_request_field_size=50000,
        forwarded_allow_ips="10.0.0.0/8,192.168.1.1",
        backlog=64,
    )
    config = worker_config(cfg, 1234)
    assert config.timeout_keep_alive == 7.0
    assert config.timeout_graceful_shutdown == 0.5
    assert config.limit_header_size == 100000  # one field of 50000 bytes, and as much again
    assert config.limit_request_line == 100000  # bounded by the head
    assert config.limit_header_count == 32768  # gunicorn's own ceiling
    assert config.forwarded_allow_ips == "10.0.0.0/8,192.168.1.1"
    assert config.backlog == 64
    assert config.limit_max_requests == 1234  # the worker's, jitter included by gunicorn


def test_tls_settings_become_our_context() -> None:
    cfg = gunicorn_cfg(
        certfile="/c.pem", keyfile="/k.pem", ca_certs="/ca.pem", cert_reqs=2, ciphers="ECDHE"
    )
    config = worker_config(cfg, None)
    assert (config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs) == (
        "/c.pem",
        "/k.pem",
        "/ca.pem",
    )
    assert config.client_cert_mode == ssl.CERT_REQUIRED and config.ssl_ciphers == "ECDHE"


def test_settings_of_newer_gunicorns_with_the_same_meaning() -> None:
    cfg = GunicornConfig()
    if "root_path" not in cfg.settings:
        pytest.fail("the dev extra installs gunicorn 27+, which has root_path and asgi_*")
    cfg.set("root_path", "/api")
    cfg.set("asgi_lifespan", "off")
    cfg.set("asgi_loop", "asyncio")
    config = worker_config(cfg, None)
    assert (config.root_path, config.lifespan, config.loop) == ("/api", "off", "asyncio")


def test_caboose_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CABOOSE_TIMEOUT_KEEP_ALIVE", "9")
    monkeypatch.setenv("CABOOSE_HTTP2_MAX_CONCURRENT_STREAMS", "7")
    monkeypatch.setenv("CABOOSE_LIMIT_CONCURRENCY", "500")
    config = worker_config(gunicorn_cfg(keepalive=3), None)
    assert config.timeout_keep_alive == 9.0
    assert config.http2_max_concurrent_streams == 7
    assert config.limit_concurrency == 500
    monkeypatch.setenv("CABOOSE_HTTP2", "maybe")
    with pytest.raises(ConfigError, match=r"CABOOSE_\* environment: .*CABOOSE_HTTP2"):
        worker_config(gunicorn_cfg(), None)


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.warnings.append(message % args)


def test_the_arbiter_checks_once_and_stops_on_what_caboose_cannot_take() -> None:
    log = Log()
    CabooseWorker.check_config(gunicorn_cfg(threads=4, worker_connections=50), log)
    assert any("threads" in line for line in log.warnings)
    assert any("worker_connections" in line for line in log.warnings)
    quiet = Log()
    CabooseWorker.check_config(gunicorn_cfg(), quiet)
    assert quiet.warnings == []
    with pytest.raises(RuntimeError, match="CabooseWorker: gunicorn's --keep-alive"):
        CabooseWorker.check_config(gunicorn_cfg(keepalive=0), Log())
    with pytest.raises(RuntimeError, match=r"--ssl-certfile: cannot read /nowhere\.pem"):
        CabooseWorker.check_config(gunicorn_cfg(certfile="/nowhere.pem"), Log())


def test_caboose_logs_reach_gunicorns_loggers() -> None:
    names = ("caboose.error", "caboose.access", "gunicorn.error", "gunicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names}
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.name}: {record.getMessage()}")

    try:
        for name in names:
            logging.getLogger(name).handlers = []
        logging.getLogger("gunicorn.error").handlers = [Keep()]
        logging.getLogger("gunicorn.error").setLevel(logging.WARNING)
        route_logs()
        logging.getLogger("caboose.error").info("not at gunicorn's level")
        logging.getLogger("caboose.error").warning("to the error log")
        logging.getLogger("caboose.access").info("nowhere: gunicorn has no access log")
        assert seen == ["caboose.error: to the error log"]
        logging.getLogger("caboose.access").handlers = []
        logging.getLogger("gunicorn.access").handlers = [Keep()]
        logging.getLogger("gunicorn.access").setLevel(logging.INFO)  # as gunicorn sets it
        route_logs()
        logging.getLogger("caboose.access").info("an exchange")
        assert seen[-1] == "caboose.access: an exchange"
    finally:
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).setLevel(level)


def test_every_setting_read_or_ignored_is_in_the_docs() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "gunicorn.md").read_text()
    settings = GunicornConfig().settings
    for name in [*SAME_MEANING, *IGNORED]:
        cli = settings[name].cli
        shown = cli[-1] if cli else name  # secure_scheme_headers has no flag
        assert f"`{shown}" in text or f"{shown}`" in text, shown


def test_gunicorns_access_log_format_becomes_ours() -> None:
    gunicorn_default = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    assert worker_config(gunicorn_cfg(), None).access_log_format is None  # unchanged: ours
    config = worker_config(gunicorn_cfg(access_log_format=gunicorn_default + " %(D)s"), None)
    assert config.access_log_format == gunicorn_default + " %(D)s"
