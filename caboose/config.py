"""Server configuration: immutable data, validated once; the CLI is generated from it."""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from caboose.errors import ConfigError

LOOPS = ("auto", "asyncio", "uvloop")
LIFESPANS = ("auto", "on", "off")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")
WS_IMPLEMENTATIONS = ("auto", "none", "websockets")
# RFC 9113 §9.2.2: HTTP/2 over TLS 1.2 needs ephemeral key exchange and AEAD ciphers.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CERT_REQS = {"none": 0, "optional": 1, "required": 2, "0": 0, "1": 1, "2": 2}
# --ssl-version: names, and uvicorn's ssl.PROTOCOL_* numbers (PROTOCOL_TLS 2, PROTOCOL_TLSv1_2
# 5, PROTOCOL_TLS_SERVER 17, its default) read as the lowest version to accept.
TLS_VERSIONS = {"tlsv1.2": "TLSv1.2", "1.2": "TLSv1.2", "2": "TLSv1.2", "5": "TLSv1.2"}
TLS_VERSIONS |= {"17": "TLSv1.2", "tlsv1.3": "TLSv1.3", "1.3": "TLSv1.3"}


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # RFC 9110 §5.5, no CR/LF/NUL


def _web_concurrency() -> int:
    """uvicorn's and gunicorn's default for --workers: $WEB_CONCURRENCY, else 1."""
    value = os.environ.get("WEB_CONCURRENCY", "")
    try:
        return int(value) if value.strip() else 1
    except ValueError:
        raise ConfigError(f"WEB_CONCURRENCY must be a number of workers, not {value!r}") from None


def _opt(
    help: str,
    group: str = "server",
    *,
    flag: str | None = None,
    separator: str | None = None,
    **cli: Any,
) -> Any:
    """Field metadata the CLI reads: help text, argument group, argparse extras.

    ``flag``: the option's name when it differs from the field's (a repeatable option is
    named for one value: ``--reload-dir`` fills ``reload_dirs``, as in uvicorn).
    ``separator``: for a ``tuple[str, ...]`` field, what splits its environment variable
    into values (default ``,``).
    """
    meta = {"help": help, "group": group, **cli}
    if flag is not None:
        meta["flag"] = flag
    if separator is not None:
        meta["separator"] = separator
    return meta


@dataclass(frozen=True)
class Config:
    """Every option caboose understands. Names match uvicorn's where they mean the same."""

    host: str = field(default="127.0.0.1", metadata=_opt("Bind socket to this host."))
    port: int = field(default=8000, metadata=_opt("Bind socket to this port (0: any free)."))
    uds: str | None = field(default=None, metadata=_opt("Bind to a UNIX domain socket."))
    fd: int | None = field(default=None, metadata=_opt("Bind to socket from this descriptor."))
    backlog: int = field(
        default=2048, metadata=_opt("Connections the kernel queues before accepting more.")
    )
    loop: str = field(default="auto", metadata=_opt("Event loop implementation.", choices=LOOPS))
    log_level: str | None = field(
        default=None,
        metadata=_opt(
            "Level of caboose's loggers (default: info, or what --log-config sets).",
            "logging",
            choices=LOG_LEVELS,
        ),
    )
    access_log: bool = field(
        default=True, metadata=_opt("Enable/disable the access log.", "logging")
    )
    access_log_format: str | None = field(
        default=None,
        metadata=_opt(
            "Access log line of gunicorn-style atoms, such as h r s B M outcome "
            "(docs/configuration.md lists them; default: caboose's own line).",
            "logging",
        ),
    )
    log_format: str = field(
        default="text",
        metadata=_opt(
            "text, or json: one JSON object per line (error and access log).",
            "logging",
            choices=LOG_FORMATS,
        ),
    )
    log_config: str | None = field(
        default=None,
        metadata=_opt(
            "Logging configuration file: .json or .yaml/.yml (dictConfig), else INI (fileConfig).",
            "logging",
        ),
    )
    use_colors: bool | None = field(
        default=None,
        metadata=_opt("Colour the level names (default: when stderr is a terminal).", "logging"),
    )
    configure_logging: bool = field(
        default=True,
        metadata=_opt(
            "Set up logging; --no-configure-logging leaves the logging module alone.", "logging"
        ),
    )
    root_path: str = field(
        default="", metadata=_opt("ASGI root_path for apps mounted below a path.", "app")
    )
    proxy_headers: bool = field(
        default=True,
        metadata=_opt(
            "Trust Forwarded (RFC 7239) and X-Forwarded-For/-Proto/-Host from "
            "--forwarded-allow-ips.",
            "proxy",
        ),
    )
    forwarded_allow_ips: str = field(
        default_factory=lambda: os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        metadata=_opt(
            "Comma-separated IPs/networks to trust proxy headers from; '*' all.", "proxy"
        ),
    )
    lifespan: str = field(
        default="auto", metadata=_opt("Lifespan protocol mode.", "app", choices=LIFESPANS)
    )
    env_file: str | None = field(
        default=None,
        metadata=_opt(
            "Load environment variables from this file (KEY=VALUE lines; the real "
            "environment wins; CABOOSE_* options in it count).",
            "app",
        ),
    )
    factory: bool = field(
        default=False, metadata=_opt("Treat APP as a factory: call it to get the app.", "app")
    )
    app_dir: str = field(
        default=".", metadata=_opt("Look for APP in this directory (put on sys.path).", "app")
    )
    ssl_certfile: str | None = field(default=None, metadata=_opt("TLS certificate file.", "tls"))
    ssl_keyfile: str | None = field(default=None, metadata=_opt("TLS private key file.", "tls"))
    ssl_keyfile_password: str | None = field(
        default=None, metadata=_opt("Password of the TLS key.", "tls")
    )
    ssl_ca_certs: str | None = field(
        default=None, metadata=_opt("CA certificates to verify clients with.", "tls")
    )
    ssl_cert_reqs: str | None = field(
        default=None,
        metadata=_opt(
            "Client certificates: none, optional or required (or uvicorn's 0/1/2); "
            "default optional with --ssl-ca-certs, else none.",
            "tls",
        ),
    )
    ssl_ciphers: str = field(
        default=DEFAULT_CIPHERS,
        metadata=_opt("OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are fixed).", "tls"),
    )
    ssl_version: str = field(
        default="TLSv1.2",
        metadata=_opt(
            "Lowest TLS version: TLSv1.2 or TLSv1.3 (uvicorn's protocol numbers 2, 5, 17 "
            "mean TLSv1.2; older versions are refused).",
            "tls",
        ),
    )
    timeout_keep_alive: float = field(
        default=5.0,
        metadata=_opt("Close idle keep-alive connections after this many seconds.", "timeouts"),
    )
    header_read_timeout: float = field(
        default=10.0,
        metadata=_opt("Seconds a client has to send a whole request head (slowloris).", "timeouts"),
    )
    timeout_graceful_shutdown: float | None = field(
        default=None,
        metadata=_opt(
            "Seconds in-flight requests get to finish on shutdown (default, as uvicorn: as "
            "long as they take; a second Ctrl-C stops at once).",
            "timeouts",
        ),
    )
    limit_concurrency: int | None = field(
        default=None,
        metadata=_opt("Answer 503 above this many concurrent connections or tasks.", "limits"),
    )
    limit_request_line: int = field(
        default=8190, metadata=_opt("Longest request-target accepted (414 above).", "limits")
    )
    limit_header_size: int = field(
        default=65536, metadata=_opt("Largest request head in bytes (431 above).", "limits")
    )
    limit_header_count: int = field(
        default=100, metadata=_opt("Most header fields in a request (431 above).", "limits")
    )
    limit_body_buffer: int = field(
        default=65536 * 4,
        metadata=_opt("Request body bytes buffered before reading pauses.", "limits"),
    )
    http2: bool = field(
        default=True,
        metadata=_opt("Serve HTTP/2: h2c by prior knowledge, h2 over TLS (ALPN).", "http2"),
    )
    h2c_upgrade: bool = field(
        default=False,
        metadata=_opt(
            "Accept 'Upgrade: h2c' from HTTP/1.1 (deprecated by RFC 9113; smuggling risk).",
            "http2",
        ),
    )
    http2_max_concurrent_streams: int = field(
        default=100, metadata=_opt("Most streams a client may open at once.", "http2")
    )
    http2_max_header_list_size: int = field(
        default=65536, metadata=_opt("Largest request header list (431 above).", "http2")
    )
    http2_max_frame_size: int = field(
        default=16384, metadata=_opt("Largest frame we accept (SETTINGS_MAX_FRAME_SIZE).", "http2")
    )
    http2_stream_window: int = field(
        default=1 << 20, metadata=_opt("Receive window of each stream, in bytes.", "http2")
    )
    http2_connection_window: int = field(
        default=16 << 20, metadata=_opt("Receive window of each connection, in bytes.", "http2")
    )
    http2_max_resets: int = field(
        default=100,
        metadata=_opt("Stream resets per second a client may cause before GOAWAY.", "http2"),
    )
    http2_max_pending_acks: int = field(
        default=1000,
        metadata=_opt("PING/SETTINGS ACKs owed at once before GOAWAY (flood limit).", "http2"),
    )
    http2_max_empty_frames: int = field(
        default=100,
        metadata=_opt("Empty DATA/CONTINUATION frames per second before GOAWAY.", "http2"),
    )
    http2_write_timeout: float = field(
        default=30.0,
        metadata=_opt("Seconds a stream may wait for the client's window before reset.", "http2"),
    )
    ws: str = field(
        default="auto",
        metadata=_opt(
            "WebSocket: auto or websockets (the same), none to serve upgrades as plain HTTP.",
            "websocket",
            choices=WS_IMPLEMENTATIONS,
        ),
    )
    ws_max_size: int = field(
        default=16 * 1024 * 1024,
        metadata=_opt("Largest WebSocket message, in bytes (1009 above).", "websocket"),
    )
    ws_max_queue: int = field(
        default=32,
        metadata=_opt("Received messages queued for the app before reading pauses.", "websocket"),
    )
    ws_per_message_deflate: bool = field(
        default=True,
        metadata=_opt("Offer permessage-deflate compression (RFC 7692).", "websocket"),
    )
    ws_ping_interval: float | None = field(
        default=20.0,
        metadata=_opt("Seconds between keep-alive pings.", "websocket"),
    )
    ws_ping_timeout: float | None = field(
        default=20.0,
        metadata=_opt("Seconds a ping may wait for its pong before the close.", "websocket"),
    )
    ws_close_timeout: float = field(
        default=5.0,
        metadata=_opt("Seconds to wait for the client's close frame after ours.", "websocket"),
    )
    cancel_grace: float = field(
        default=1.0,
        metadata=_opt(
            "Seconds an app may run on once its client reset the stream or went away.",
            "timeouts",
        ),
    )
    workers: int = field(
        default_factory=lambda: _web_concurrency(),
        metadata=_opt(
            "Worker processes sharing the sockets (default: $WEB_CONCURRENCY or 1).", "workers"
        ),
    )
    timeout_worker_healthcheck: float = field(
        default=30.0,
        metadata=_opt("Seconds a worker may miss its heartbeat before it is replaced.", "workers"),
    )
    limit_max_requests: int | None = field(
        default=None,
        metadata=_opt("Replace a worker, gracefully, after this many requests.", "workers"),
    )
    limit_max_requests_jitter: int = field(
        default=0,
        metadata=_opt(
            "Up to this many requests more, at random per worker (staggers them).", "workers"
        ),
    )
    reload: bool = field(
        default=False,
        metadata=_opt("Restart the workers when a watched file changes (development).", "reload"),
    )
    reload_dirs: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Watch this directory instead of --app-dir; repeatable.",
            "reload",
            flag="--reload-dir",
            metavar="DIR",
            separator=os.pathsep,  # a list of directories, as in PATH
        ),
    )
    reload_includes: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Reload on changes to files matching this glob too (besides *.py); repeatable.",
            "reload",
            flag="--reload-include",
            metavar="GLOB",
        ),
    )
    reload_excludes: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Ignore files and directories matching this glob "
            "(besides .*, *.py[cod], *.sw.*, ~*); repeatable.",
            "reload",
            flag="--reload-exclude",
            metavar="GLOB",
        ),
    )
    reload_delay: float = field(
        default=0.25,
        metadata=_opt(
            "Seconds without another change before reloading (a burst of saves: one reload).",
            "reload",
        ),
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_opt(
            "Serve Prometheus metrics at /metrics on this port (needs caboose[metrics]).",
            "metrics",
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1", metadata=_opt("Bind the metrics endpoint to this host.", "metrics")
    )
    server_header: bool = field(default=True, metadata=_opt("Send a Server header."))
    date_header: bool = field(default=True, metadata=_opt("Send a Date header."))
    headers: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Add this header to every response, as 'Name: value'; repeatable. A Server "
            "header given here replaces caboose's.",
            flag="--header",
            metavar="'NAME: VALUE'",
            separator="\n",  # values hold commas and colons: one per line
        ),
    )

    def __post_init__(self) -> None:
        self._normalize_lists()
        self._check_ranges()
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("--ssl-keyfile needs --ssl-certfile")
        self.trusted_proxies()  # fail early on a malformed --forwarded-allow-ips
        self._check_tls()
        self.extra_headers()  # fail early on a malformed --header

    def _check_tls(self) -> None:
        if self.ssl_cert_reqs is not None and self.ssl_cert_reqs.lower() not in CERT_REQS:
            raise ConfigError(
                "--ssl-cert-reqs must be none, optional or required (0, 1, 2), "
                f"not {self.ssl_cert_reqs!r}"
            )
        if self.client_cert_mode > 0 and self.ssl_ca_certs is None:
            raise ConfigError("--ssl-cert-reqs optional/required needs --ssl-ca-certs")
        if self.ssl_version.lower() not in TLS_VERSIONS:
            raise ConfigError(
                f"--ssl-version must be TLSv1.2 or TLSv1.3, not {self.ssl_version!r} "
                "(TLS 1.0 and 1.1 are deprecated, RFC 8996; HTTP/2 needs 1.2, RFC 9113 §9.2)"
            )

    def _check_ranges(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, not {self.port}")
        for name in ("timeout_keep_alive", "header_read_timeout", "timeout_graceful_shutdown"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        for name in ("limit_request_line", "limit_header_size", "limit_header_count"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.backlog < 1:
            raise ConfigError(f"--backlog must be at least 1, not {self.backlog}")
        if self.limit_concurrency is not None and self.limit_concurrency < 1:
            raise ConfigError("--limit-concurrency must be at least 1")
        if self.loop not in LOOPS:
            raise ConfigError(f"--loop must be one of {', '.join(LOOPS)}")
        if self.lifespan not in LIFESPANS:
            raise ConfigError(f"--lifespan must be one of {', '.join(LIFESPANS)}")
        self._check_logging()
        if self.ws not in WS_IMPLEMENTATIONS:
            raise ConfigError(f"--ws must be one of {', '.join(WS_IMPLEMENTATIONS)}")
        for name in ("ws_max_size", "ws_max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.ws_close_timeout <= 0:
            raise ConfigError("--ws-close-timeout must be positive")
        self._check_workers()
        self._check_http2()
        self._check_reload()
        self._check_metrics()

    def _check_logging(self) -> None:
        if self.log_level is not None and self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
        if self.access_log_format is not None:
            from caboose.transport.access import check_format  # the atoms live with the log

            try:
                check_format(self.access_log_format)
            except ValueError as exc:
                raise ConfigError(f"--access-log-format: {exc}") from None

    def _check_metrics(self) -> None:
        if self.metrics_port is None:
            return
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"--metrics-port must be between 0 and 65535, not {self.metrics_port}"
            )
        same_host = self.metrics_host == self.host and self.uds is None and self.fd is None
        if self.metrics_port == self.port != 0 and same_host:
            raise ConfigError("--metrics-port must differ from --port")
        try:
            importlib.import_module("prometheus_client")
        except ImportError:
            raise ConfigError(
                "--metrics-port needs prometheus_client: pip install 'caboose[metrics]'"
            ) from None

    def _check_workers(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {self.workers}")
        if self.timeout_worker_healthcheck <= 0:
            raise ConfigError("--timeout-worker-healthcheck must be positive")
        if self.limit_max_requests is not None and self.limit_max_requests < 1:
            raise ConfigError("--limit-max-requests must be at least 1")
        if self.limit_max_requests_jitter < 0:
            raise ConfigError("--limit-max-requests-jitter must not be negative")

    def _normalize_lists(self) -> None:
        """A list option may be given from Python as a list or one string: keep a tuple."""
        for f in fields(self):
            value = getattr(self, f.name)
            if str(f.type).startswith("tuple[") and not isinstance(value, tuple):
                value = (value,) if isinstance(value, str) else tuple(value)
                object.__setattr__(self, f.name, value)  # frozen: only here, before use

    def _check_reload(self) -> None:
        if self.reload_delay < 0:
            raise ConfigError(f"--reload-delay must not be negative, not {self.reload_delay}")
        if not self.reload:
            return  # the options do nothing then (the server warns); a stale path is harmless
        for directory in self.reload_dirs:
            if not os.path.isdir(directory):
                raise ConfigError(f"--reload-dir {directory!r} is not a directory")
        if not self.reload_dirs and not os.path.isdir(self.app_dir):
            raise ConfigError(
                f"--app-dir {self.app_dir!r} is not a directory (--reload watches it)"
            )

    def _check_http2(self) -> None:
        if not 16384 <= self.http2_max_frame_size <= 16777215:
            raise ConfigError("--http2-max-frame-size must be between 16384 and 16777215")
        if not 65535 <= self.http2_stream_window <= 2**31 - 1:
            raise ConfigError("--http2-stream-window must be between 65535 and 2147483647")
        if not 65535 <= self.http2_connection_window <= 2**31 - 1:
            raise ConfigError("--http2-connection-window must be between 65535 and 2147483647")
        for name in (
            "http2_max_concurrent_streams",
            "http2_max_header_list_size",
            "http2_max_resets",
            "http2_max_pending_acks",
            "http2_max_empty_frames",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("http2_write_timeout", "cancel_grace"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")

    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """--header as (lower-case name, value) fields, checked as RFC 9110 §5 wants them."""
        fields = []
        for text in self.headers:
            name, colon, value = text.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not _TOKEN.fullmatch(name):
                raise ConfigError(f"--header must be 'Name: value', not {text!r}")
            if not _FIELD_VALUE.fullmatch(value):
                raise ConfigError(f"--header {name}: only visible latin-1 text, spaces and tabs")
            fields.append((name.lower().encode("ascii"), value.encode("latin-1")))
        return fields

    @property
    def is_tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def client_cert_mode(self) -> int:
        """ssl.VerifyMode's value for client certificates (0 none, 1 optional, 2 required)."""
        if self.ssl_cert_reqs is None:
            return 1 if self.ssl_ca_certs else 0
        return CERT_REQS[self.ssl_cert_reqs.lower()]

    @property
    def tls_minimum_version(self) -> str:
        """The ``ssl.TLSVersion`` member name of the lowest version served."""
        return TLS_VERSIONS[self.ssl_version.lower()].replace(".", "_")

    def trusted_proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
        """The proxy networks trusted for X-Forwarded-*; ``None`` means trust everyone."""
        entries = [item.strip() for item in self.forwarded_allow_ips.split(",") if item.strip()]
        if "*" in entries:
            return None
        try:
            return [ipaddress.ip_network(entry, strict=False) for entry in entries]
        except ValueError as exc:
            raise ConfigError(f"--forwarded-allow-ips: {exc}") from None

    @classmethod
    def from_options(cls, **options: Any) -> Config:
        """Build from keyword options, naming any unknown one in the error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**options)
