"""The one event vocabulary that HTTP/1.1 and HTTP/2, server and client roles, all emit.

A connection object turns received bytes into a list of these events. HTTP/1.1 numbers its
request cycles 1, 2, 3, ... as stream ids so that pipelined requests stay distinguishable;
HTTP/2 uses its real stream ids. Consumers dispatch with ``match``.

Events are immutable by convention: nothing mutates one after it was emitted. They are not
``frozen`` dataclasses because a frozen dataclass assigns every field through
``object.__setattr__`` and costs about five times as much to build (measured: 1.07 µs against
0.22 µs for RequestReceived), and every request builds two or three of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]
# Fields as an application hands them over: ASGI allows any iterable of [name, value] pairs,
# tuples or lists. The cores validate them while they copy them, so this type stays loose
# all the way down: a compiled build checks declared types at run time and would otherwise
# refuse a list of lists that the pure-Python build serves.
AppHeaders = Iterable[Sequence[bytes]]


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(slots=True)
class RequestReceived(Event):
    """A request head arrived (server role). ``target`` is the raw request-target / :path.

    The facts every consumer needs are read once, by the core, while it parses the head:
    ``authority`` (:authority, or HTTP/1.1's Host), ``accepts_trailers`` (TE: trailers, RFC
    9110 §10.1.4), ``expect_continue`` (Expect: 100-continue, §10.1.1) and ``upgrade`` (the
    protocols an HTTP/1.1 ``Upgrade`` offers when Connection names it, RFC 9110 §7.8).
    """

    stream_id: int
    method: bytes
    target: bytes
    headers: Headers
    http_version: str
    end_stream: bool = False
    scheme: bytes = b""
    authority: bytes = b""
    protocol: bytes = b""  # :protocol of an extended CONNECT (RFC 8441)
    accepts_trailers: bool = False
    expect_continue: bool = False
    upgrade: bytes = b""


@dataclass(slots=True)
class ResponseReceived(Event):
    """A final response head arrived (client role)."""

    stream_id: int
    status: int
    headers: Headers
    http_version: str
    end_stream: bool = False


@dataclass(slots=True)
class InformationalResponseReceived(Event):
    """A 1xx response arrived (client role): 100 Continue, 103 Early Hints."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(slots=True)
class DataReceived(Event):
    """Body bytes. ``flow_controlled_length`` counts padding too (HTTP/2 flow control)."""

    stream_id: int
    data: bytes
    flow_controlled_length: int = 0
    end_stream: bool = False


@dataclass(slots=True)
class TrailersReceived(Event):
    """The trailer section of a message; the stream ends with it."""

    stream_id: int
    headers: Headers


@dataclass(slots=True)
class StreamEnded(Event):
    """The peer finished sending on this stream (END_STREAM / end of an H1 message)."""

    stream_id: int


@dataclass(slots=True)
class StreamReset(Event):
    """The stream was reset; ``remote`` tells whether the peer or we reset it."""

    stream_id: int
    error_code: int
    remote: bool = True


@dataclass(slots=True)
class WindowOpened(Event):
    """More may now be sent: on ``stream_id``, or on every stream when it is 0."""

    stream_id: int
    delta: int


@dataclass(slots=True)
class SettingsChanged(Event):
    """The peer's SETTINGS were applied: ``changed`` maps setting id to (old, new)."""

    changed: dict[int, tuple[int, int]]


@dataclass(slots=True)
class SettingsAcknowledged(Event):
    """The peer acknowledged our SETTINGS."""


@dataclass(slots=True)
class PingReceived(Event):
    """The peer pinged us; the ACK is already queued."""

    data: bytes


@dataclass(slots=True)
class PingAcknowledged(Event):
    """The peer answered our PING."""

    data: bytes


@dataclass(slots=True)
class GoAwayReceived(Event):
    """The peer will accept no stream above ``last_stream_id``."""

    last_stream_id: int
    error_code: int
    debug_data: bytes = b""


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """The connection is over: the peer closed it, or a protocol error ended it."""

    error_code: int = 0
    reason: str = ""
