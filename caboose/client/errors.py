"""Why a client stream closed, and the errors that say so.

Every exchange ends with a ``CloseReason``: on the ``Response`` once its body is over, and
on the error that ended it early. ``retryable`` errors are the ones RFC 9113 §8.7 lets a
client send again: the server promises it did not process the request (REFUSED_STREAM, or a
stream above a GOAWAY's last stream id).
"""

from __future__ import annotations

from enum import Enum

from caboose.errors import ErrorCode


class CloseReason(Enum):
    """How one exchange ended."""

    ENDED = "ended"  # the whole response arrived
    RESET_BY_PEER = "reset by peer"  # RST_STREAM from the server
    REFUSED = "refused"  # not processed: REFUSED_STREAM or above a GOAWAY's last id
    CONNECTION_LOST = "connection lost"  # the connection closed or broke mid-exchange
    CONNECT_FAILED = "connect failed"  # no connection could be made
    MAX_SIZE_EXCEEDED = "max size exceeded"  # the response outgrew max_response_size
    CANCELLED = "cancelled"  # the caller cancelled or closed the response early
    INACTIVE = "inactive"  # a read, write or pool timeout expired
    INVALID_HOSTNAME = "invalid hostname"  # unresolvable, or not the certificate's name
    PROTOCOL_ERROR = "protocol error"  # the server broke HTTP/1.1 or HTTP/2


class ClientError(Exception):
    """An exchange did not complete; ``reason`` says how it ended."""

    reason = CloseReason.CONNECTION_LOST
    retryable = False

    def __init__(self, message: str, *, reason: CloseReason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConnectError(ClientError):
    """No connection to the origin: refused, unreachable, or the TLS handshake failed."""

    reason = CloseReason.CONNECT_FAILED


class InvalidHostname(ConnectError):
    """The host cannot be resolved, or the server's certificate is not for it."""

    reason = CloseReason.INVALID_HOSTNAME


class ConnectionLost(ClientError):
    """The connection closed or failed before the exchange was over."""

    reason = CloseReason.CONNECTION_LOST


class RemoteProtocolError(ClientError):
    """The server broke the protocol (a malformed response, a bad frame)."""

    reason = CloseReason.PROTOCOL_ERROR


class StreamReset(ClientError):
    """The server reset the stream (RST_STREAM, RFC 9113 §6.4) with ``error_code``."""

    reason = CloseReason.RESET_BY_PEER

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamRefused(StreamReset):
    """The server did not process the request, so it may be sent again (RFC 9113 §8.7)."""

    reason = CloseReason.REFUSED
    retryable = True

    def __init__(self, message: str, error_code: int = ErrorCode.REFUSED_STREAM) -> None:
        super().__init__(message, error_code)


class ResponseTooLarge(ClientError):
    """The response is larger than ``max_response_size``: announced by its Content-Length,
    or counted as it arrived. The stream was reset (HTTP/2) or the connection closed."""

    reason = CloseReason.MAX_SIZE_EXCEEDED

    def __init__(self, size: int, limit: int, *, announced: bool) -> None:
        how = "announces" if announced else "reached"
        super().__init__(f"the response {how} {size} bytes, above max_response_size {limit}")
        self.size = size
        self.limit = limit


class ClientTimeout(ClientError, TimeoutError):
    """A timeout expired; the subclass names which one."""

    reason = CloseReason.INACTIVE


class ConnectTimeout(ClientTimeout, ConnectError):
    """Connecting (TCP and TLS) took longer than the connect timeout."""

    reason = CloseReason.INACTIVE


class ReadTimeout(ClientTimeout):
    """The server sent nothing for longer than the read timeout."""


class WriteTimeout(ClientTimeout):
    """The request body could not be sent for longer than the write timeout (the server's
    flow-control window or the socket stayed full)."""


class PoolTimeout(ClientTimeout):
    """No connection or stream became free within the pool timeout (every connection busy,
    or the server's MAX_CONCURRENT_STREAMS reached)."""
