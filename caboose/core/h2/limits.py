"""Flood limits for one HTTP/2 connection: budgets the peer spends, refilled by the driver.

The core reads no clock, so rates are budgets: each suspicious frame spends one unit and the
driver calls ``refill()`` on a timer (say once a second) to restore them. Running out is a
connection error ENHANCE_YOUR_CALM (RFC 9113 §5.4.1, §7). Covered attacks:

* ping / settings floods (CVE-2019-9512, CVE-2019-9515): ACKs we owe and have not yet handed
  to the driver through ``data_to_send()``; a peer that does not read its socket makes the
  driver stop reading (its write buffer is full), so this bounds what one read can queue;
* empty-frame floods (CVE-2019-9518): DATA without payload or END_STREAM, empty
  CONTINUATION frames, which cost us work and move nothing;
* reset floods (CVE-2019-9514, "rapid reset" CVE-2023-44487): RST_STREAM received, and
  streams we had to reset because of the peer's errors.
"""

from __future__ import annotations

from caboose.errors import ErrorCode, RemoteProtocolError


class FloodGuard:
    """Per-connection budgets; ``None`` for a limit disables it."""

    __slots__ = (
        "_empty_left",
        "_resets_left",
        "max_empty_frames",
        "max_resets",
        "max_unflushed_acks",
        "unflushed_acks",
    )

    def __init__(
        self,
        *,
        max_unflushed_acks: int | None = 1000,
        max_empty_frames: int | None = 100,
        max_resets: int | None = 200,
    ) -> None:
        self.max_unflushed_acks = max_unflushed_acks
        self.max_empty_frames = max_empty_frames
        self.max_resets = max_resets
        self.unflushed_acks = 0
        self._empty_left = max_empty_frames
        self._resets_left = max_resets

    @property
    def resets_left(self) -> int | None:
        return self._resets_left

    @property
    def empty_frames_left(self) -> int | None:
        return self._empty_left

    def refill(self) -> None:
        """Restore the empty-frame and reset budgets (the driver calls this periodically)."""
        self._empty_left = self.max_empty_frames
        self._resets_left = self.max_resets

    def ack_queued(self) -> None:
        """We queued a PING or SETTINGS ACK."""
        self.unflushed_acks += 1
        limit = self.max_unflushed_acks
        if limit is not None and self.unflushed_acks > limit:
            raise _calm("too many PING/SETTINGS frames awaiting an ACK")

    def flushed(self) -> None:
        """Everything queued went to the driver."""
        self.unflushed_acks = 0

    def empty_frame(self) -> None:
        """The peer sent a frame that carries nothing."""
        left = self._empty_left
        if left is not None:
            if left <= 0:
                raise _calm("too many empty frames")
            self._empty_left = left - 1

    def reset(self) -> None:
        """A stream was reset, by the peer or by us because of the peer."""
        left = self._resets_left
        if left is not None:
            if left <= 0:
                raise _calm("too many stream resets")
            self._resets_left = left - 1


def _calm(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ErrorCode.ENHANCE_YOUR_CALM, stream_id=0)
