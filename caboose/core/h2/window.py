"""HTTP/2 flow-control window accounting (RFC 9113 §5.2, §6.9), one window per object.

A connection keeps one ``SendWindow`` and one ``ReceiveWindow`` for itself (stream id 0) and
one of each per stream. Errors carry the window's stream id, so a violation on a stream window
is a stream error and one on the connection window a connection error (§6.9.1).
"""

from __future__ import annotations

from typing import Final

from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

DEFAULT_WINDOW_SIZE: Final = 65_535  # §6.9.2: initial window of every stream and the connection
MAX_WINDOW_SIZE: Final = 2**31 - 1  # §6.9.1


class SendWindow:
    """How much we may still send. ``available`` may be negative after a SETTINGS change."""

    __slots__ = ("available", "stream_id")

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE, *, stream_id: int = 0) -> None:
        self.available = size
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"SendWindow(stream_id={self.stream_id}, available={self.available})"

    def consume(self, n: int) -> None:
        """We are sending ``n`` flow-controlled bytes (a DATA payload, padding included)."""
        if n > self.available:
            raise LocalProtocolError(
                f"sending {n} bytes into a window of {self.available}",
                code=ErrorCode.FLOW_CONTROL_ERROR,
                stream_id=self.stream_id,
            )
        self.available -= n

    def grow(self, increment: int) -> None:
        """The peer sent WINDOW_UPDATE (§6.9.1); beyond 2**31-1 is a FLOW_CONTROL_ERROR."""
        available = self.available + increment
        if available > MAX_WINDOW_SIZE:
            # §6.9.1: RST_STREAM for a stream window, GOAWAY for the connection window.
            raise RemoteProtocolError(
                f"WINDOW_UPDATE takes the window to {available}, above 2**31-1",
                code=ErrorCode.FLOW_CONTROL_ERROR,
                stream_id=self.stream_id,
            )
        self.available = available

    def adjust(self, delta: int) -> None:
        """The peer changed SETTINGS_INITIAL_WINDOW_SIZE by ``delta`` (§6.9.2).

        Applies to stream windows only, never to the connection window. The result may be
        negative; a result above 2**31-1 is a *connection* error FLOW_CONTROL_ERROR.
        """
        available = self.available + delta
        if available > MAX_WINDOW_SIZE:
            raise RemoteProtocolError(
                f"SETTINGS_INITIAL_WINDOW_SIZE takes stream {self.stream_id} window above 2**31-1",
                code=ErrorCode.FLOW_CONTROL_ERROR,
                stream_id=0,
            )
        self.available = available


class ReceiveWindow:
    """How much the peer may still send us, and when to give it more credit.

    Invariant: ``available`` + bytes received but not consumed + credit not yet sent ==
    ``target``, the window we want the peer to see. ``receive`` counts arriving bytes;
    ``consume`` counts bytes the application has taken (RFC 9113 §6.9 lets us credit only
    then, which is how backpressure reaches the peer). Credit is batched: consumed bytes
    accumulate and ``consume`` returns a WINDOW_UPDATE increment only once they reach half
    of ``target``, else 0. So a stream of small reads costs one frame per half window, and
    when the application has consumed everything the peer always has at least half the
    target to send into: batching can delay the peer, never deadlock it.
    """

    __slots__ = ("_unsent", "available", "stream_id", "target")

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE, *, stream_id: int = 0) -> None:
        self.target = size
        self.available = size  # what the peer may still send, in its own accounting
        self.stream_id = stream_id
        # Consumed but not yet credited; negative while credit is withheld to shrink the window.
        self._unsent = 0

    def __repr__(self) -> str:
        return (
            f"ReceiveWindow(stream_id={self.stream_id}, available={self.available}, "
            f"target={self.target})"
        )

    def receive(self, n: int) -> None:
        """``n`` flow-controlled bytes arrived (the whole DATA payload, padding included)."""
        if n > self.available:
            # §6.9.1: the peer overran the window it was given.
            raise RemoteProtocolError(
                f"received {n} bytes into a window of {self.available}",
                code=ErrorCode.FLOW_CONTROL_ERROR,
                stream_id=self.stream_id,
            )
        self.available -= n

    def consume(self, n: int) -> int:
        """The application took ``n`` bytes; return the increment to send now, or 0."""
        unsent = self._unsent + n
        if unsent <= 0 or unsent < self.target >> 1:
            self._unsent = unsent
            return 0
        self._unsent = 0
        self.available += unsent
        return unsent

    def flush(self) -> int:
        """Credit every consumed byte now, whatever the batching; return the increment or 0."""
        unsent = self._unsent
        if unsent <= 0:
            return 0
        self._unsent = 0
        self.available += unsent
        return unsent

    def set_target(self, size: int) -> int:
        """Change the window we want; return the increment to send now (growing), or 0.

        Shrinking cannot be signalled (§6.9: there is no negative WINDOW_UPDATE), so the
        difference is withheld from future credit instead.
        """
        if not 0 <= size <= MAX_WINDOW_SIZE:
            raise LocalProtocolError(f"window size {size} outside 0..2**31-1")
        self._unsent += size - self.target
        self.target = size
        return self.flush()

    def adjust(self, delta: int) -> None:
        """Our SETTINGS_INITIAL_WINDOW_SIZE changed by ``delta`` and the peer ACKed it (§6.9.2).

        The peer applies the same delta to its view of this stream window, so ``available``
        follows (it may go negative) and the target moves with it.
        """
        available = self.available + delta
        if available > MAX_WINDOW_SIZE:
            raise LocalProtocolError(
                f"SETTINGS_INITIAL_WINDOW_SIZE takes stream {self.stream_id} window above 2**31-1",
                code=ErrorCode.FLOW_CONTROL_ERROR,
            )
        self.available = available
        target = self.target + delta
        # A target cannot go below 0; crediting the shortfall later brings the peer's
        # window back up to exactly 0, not beyond.
        self.target = max(0, target)
        self._unsent += self.target - target
