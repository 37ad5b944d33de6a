"""The access log: one entry per exchange, and its line formatted only when a handler asks.

An ``AccessEntry`` is the record's arguments. ``str()`` of it is the default line; as a
mapping it fills an ``--access-log-format`` (gunicorn/hypercorn-style ``%(atom)s``), each
atom computed when the format asks for it; ``fields()`` is what a JSON line carries. Nothing
is formatted for a logger that is not enabled for INFO, and no caller frame is looked up.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from time import monotonic
from typing import Any, Protocol

from caboose.asgi.http import Scope

access_logger = logging.getLogger("caboose.access")


class Logged(Protocol):
    """What the access log and the metrics read of an exchange (HTTP or WebSocket)."""

    @property
    def scope(self) -> Scope: ...

    @property
    def status(self) -> int: ...

    @property
    def stream_id(self) -> int: ...

    @property
    def sent(self) -> int: ...

    @property
    def started(self) -> float: ...

    @property
    def response_headers(self) -> Iterable[Any]: ...


# Called once when an exchange ends, with how it ended: completed, client disconnected,
# reset, app error, refused, write timeout (WebSockets also: closed, denied).
Ended = Callable[[Logged, str], None]


def _header(fields: Iterable[Any], name: bytes) -> str:
    values = [bytes(value).decode("latin-1") for key, value in fields if bytes(key).lower() == name]
    return ", ".join(values) if values else "-"


class AccessEntry(Mapping[str, str]):
    """One finished exchange, as the access log sees it."""

    __slots__ = ("duration", "outcome", "stream")

    def __init__(self, stream: Logged, outcome: str, duration: float) -> None:
        self.stream = stream
        self.outcome = outcome
        self.duration = duration  # seconds, from the request's arrival to its end

    # -- the default line and the JSON fields ---------------------------------------------------

    def __str__(self) -> str:
        scope = self.stream.scope
        version = scope["http_version"]
        stream = f" stream={self.stream.stream_id}" if version == "2" else ""
        return (
            f'{self.client} - "{self.method} {self.target} HTTP/{version}" '
            f"{self.stream.status or '-'} {self.stream.sent}B {self.duration * 1000:.2f}ms"
            f"{stream} {self.outcome}"
        )

    def fields(self) -> dict[str, Any]:
        """The keys of a JSON access line (``--log-format json``)."""
        scope, stream = self.stream.scope, self.stream
        version = scope["http_version"]
        return {
            "client": self.client if scope["client"] else None,
            "method": self.method,
            "path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "protocol": f"HTTP/{version}",
            "scheme": scope["scheme"],
            "status": stream.status or None,
            "bytes": stream.sent,
            "duration_ms": round(self.duration * 1000, 3),
            "stream": stream.stream_id if version == "2" else None,
            "outcome": self.outcome,
        }

    @property
    def client(self) -> str:
        client = self.stream.scope["client"]
        return f"{client[0]}:{client[1]}" if client else "-"

    @property
    def method(self) -> str:
        return str(self.stream.scope.get("method", "WEBSOCKET"))

    @property
    def target(self) -> str:
        scope = self.stream.scope
        target: str = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        return target

    # -- the mapping an --access-log-format reads ---------------------------------------------

    def __getitem__(self, atom: str) -> str:
        compute = ATOMS.get(atom)
        if compute is not None:
            return compute(self)
        if atom.startswith("{") and atom[-2:] in ("}i", "}o"):
            name = atom[1:-2].lower().encode("latin-1")
            if atom[-1] == "i":
                return _header(self.stream.scope["headers"], name)
            return _header(self.stream.response_headers, name)
        raise KeyError(atom)

    def __iter__(self) -> Iterator[str]:
        return iter(ATOMS)

    def __len__(self) -> int:
        return len(ATOMS)


def _status(entry: AccessEntry) -> str:
    return str(entry.stream.status or "-")


def _phrase(entry: AccessEntry) -> str:
    try:
        return HTTPStatus(entry.stream.status).phrase
    except ValueError:
        return "-"


def _date(entry: AccessEntry) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime())


def _query(entry: AccessEntry) -> str:
    return str(entry.stream.scope["query_string"].decode("latin-1"))


# Every atom of --access-log-format (docs/configuration.md, "Logging", lists them).
ATOMS: dict[str, Callable[[AccessEntry], str]] = {
    "h": lambda e: str(e.stream.scope["client"][0]) if e.stream.scope["client"] else "-",
    "client": lambda e: e.client,
    "l": lambda e: "-",
    "u": lambda e: "-",
    "t": _date,
    "r": lambda e: f"{e.method} {e.target} HTTP/{e.stream.scope['http_version']}",
    "m": lambda e: e.method,
    "U": lambda e: str(e.stream.scope["raw_path"].decode("latin-1")),
    "q": _query,
    "H": lambda e: f"HTTP/{e.stream.scope['http_version']}",
    "s": _status,
    "st": _phrase,
    "S": lambda e: str(e.stream.scope["scheme"]),
    "B": lambda e: str(e.stream.sent),
    "b": lambda e: str(e.stream.sent or "-"),
    "T": lambda e: str(int(e.duration)),
    "M": lambda e: str(int(e.duration * 1000)),
    "D": lambda e: str(int(e.duration * 1_000_000)),
    "L": lambda e: f"{e.duration:.6f}",
    "a": lambda e: _header(e.stream.scope["headers"], b"user-agent"),
    "f": lambda e: _header(e.stream.scope["headers"], b"referer"),
    "p": lambda e: str(os.getpid()),
    "stream": lambda e: str(e.stream.stream_id) if e.stream.scope["http_version"] == "2" else "-",
    "outcome": lambda e: e.outcome,
}

_NAMED = re.compile(r"%\(([^)]*)\)")
_HEADER_ATOM = re.compile(r"\{[^{}]+\}[io]")


class _Sample(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def check_format(fmt: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``fmt`` is a usable access-log format."""
    if "%" in fmt.replace("%%", "").replace("%(", ""):
        raise ValueError("every % must name an atom, as in %(s)s (%% for a percent sign)")
    unknown = [key for key in _NAMED.findall(fmt) if key not in ATOMS]
    unknown = [key for key in unknown if not _HEADER_ATOM.fullmatch(key)]
    if unknown:
        raise ValueError(f"unknown atom(s) {', '.join(map(repr, unknown))}")
    try:
        fmt % _Sample()
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


_SOURCE = __file__


def access_log(fmt: str | None) -> Ended:
    """What ends an exchange for the access log: one record, if the logger wants INFO."""
    message = "%s" if fmt is None else fmt
    logger, name, info = access_logger, access_logger.name, logging.INFO

    def log(stream: Logged, outcome: str) -> None:
        if logger.isEnabledFor(info):
            entry = AccessEntry(stream, outcome, monotonic() - stream.started)
            # makeRecord + handle: what logger.info does, without looking up the caller's
            # frame (a cost per request, for a location that is always this one).
            logger.handle(logger.makeRecord(name, info, _SOURCE, 0, message, entry, None))

    return log
