"""Error types that carry their wire meaning: an HTTP status hint and an HTTP/2 error code.

Split as h11 does: a ``LocalProtocolError`` means we (or the app) misused the protocol;
a ``RemoteProtocolError`` means the peer misbehaved. Both know how to answer on the wire.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """HTTP/2 error codes (RFC 9113 §7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ProtocolError(Exception):
    """Base of protocol errors; ``status`` is the HTTP/1.1 answer, ``code`` the HTTP/2 one.

    Subclasses set ``default_status`` / ``default_code`` to carry their own wire meaning.
    """

    default_status: int = 400
    default_code: ErrorCode = ErrorCode.PROTOCOL_ERROR

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: ErrorCode | None = None,
        stream_id: int = 0,
    ) -> None:
        super().__init__(message)
        self.status = self.default_status if status is None else status
        self.code = self.default_code if code is None else code
        # 0 means the whole connection; otherwise only this stream is in error.
        self.stream_id = stream_id

    @property
    def is_stream_error(self) -> bool:
        return self.stream_id != 0


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


class LocalProtocolError(ProtocolError, RuntimeError):
    """We, or the application through us, tried to break the protocol.

    It is also a ``RuntimeError``: that is what an ASGI application sees when it sends
    something that cannot go on the wire (a bad header, a body after the trailers, ...).
    """


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option."""


class AppLoadError(RuntimeError):
    """The application could not be imported or built. ``traceback``: where the app's own
    code failed (an exception while importing its module), for the log; else empty."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class ClientDisconnected(OSError):
    """``send()`` after the client went away: the HTTP/1.1 connection closed, the HTTP/2 stream
    was reset, or the connection was lost. ASGI 2.4 asks for an ``OSError`` subclass here;
    Starlette relies on it to stop a streaming response at its next send."""
