"""HTTP/2 SETTINGS (RFC 9113 §6.5): identifiers, defaults, validation and ACK bookkeeping.

Two objects per connection: a ``Settings`` with the peer's values (applied as each SETTINGS
frame arrives, §6.5.3) and a ``LocalSettings`` with ours, which take effect only when the peer
acknowledges them. The frame payload codec itself is ``frames.parse_settings`` /
``frames.settings_payload``; this module adds meaning.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Final, NoReturn

from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

from .frames import settings_payload

__all__ = [
    "DEFAULTS",
    "MAX_WINDOW_SIZE",
    "UNLIMITED",
    "LocalSettings",
    "SettingCode",
    "Settings",
    "check_setting",
    "encode_settings",
]

Pairs = Iterable[tuple[int, int]]
Changes = dict[int, tuple[int, int]]


class SettingCode(IntEnum):
    """Setting identifiers: RFC 9113 §6.5.2, RFC 8441 §3, RFC 9218 §2.1."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8
    NO_RFC7540_PRIORITIES = 0x9


MAX_WINDOW_SIZE: Final = 2**31 - 1
MIN_MAX_FRAME_SIZE: Final = 16_384
MAX_MAX_FRAME_SIZE: Final = 16_777_215
# "Unlimited" initial values (§6.5.2) as an int above every 32-bit value, so that limit checks
# stay plain comparisons. Never sent: ``non_default`` leaves defaults out.
UNLIMITED: Final = 2**32

DEFAULTS: Final[dict[int, int]] = {
    SettingCode.HEADER_TABLE_SIZE: 4096,
    SettingCode.ENABLE_PUSH: 1,
    SettingCode.MAX_CONCURRENT_STREAMS: UNLIMITED,
    SettingCode.INITIAL_WINDOW_SIZE: 65_535,
    SettingCode.MAX_FRAME_SIZE: 16_384,
    SettingCode.MAX_HEADER_LIST_SIZE: UNLIMITED,
    SettingCode.ENABLE_CONNECT_PROTOCOL: 0,
    SettingCode.NO_RFC7540_PRIORITIES: 0,
}

_ATTRS: Final[dict[int, str]] = {code: SettingCode(code).name.lower() for code in DEFAULTS}
_BOOLEAN: Final = frozenset(
    {
        SettingCode.ENABLE_PUSH,
        SettingCode.ENABLE_CONNECT_PROTOCOL,
        SettingCode.NO_RFC7540_PRIORITIES,
    }
)


def encode_settings(pairs: Pairs) -> bytes:
    """A SETTINGS payload (§6.5.1) for ``pairs``; also the body of an h2c HTTP2-Settings."""
    return settings_payload(list(pairs))


def check_setting(code: int, value: int, *, sender_is_server: bool = False) -> None:
    """Raise ``RemoteProtocolError`` (a connection error) if a received value is illegal.

    §6.5.2: unknown identifiers are ignored, so they always pass.
    """
    if code in _BOOLEAN and value > 1:
        # ENABLE_PUSH (§6.5.2), ENABLE_CONNECT_PROTOCOL (RFC 8441 §3),
        # NO_RFC7540_PRIORITIES (RFC 9218 §2.1): only 0 or 1.
        _fail(f"setting {SettingCode(code).name} = {value}, not 0 or 1")
    if code == SettingCode.ENABLE_PUSH and value == 1 and sender_is_server:
        # §6.5.2: a client MUST treat a server's ENABLE_PUSH of 1 as a PROTOCOL_ERROR.
        _fail("server sent SETTINGS_ENABLE_PUSH = 1")
    elif code == SettingCode.INITIAL_WINDOW_SIZE and value > MAX_WINDOW_SIZE:
        _fail(f"initial window size {value} above 2**31-1", ErrorCode.FLOW_CONTROL_ERROR)
    elif code == SettingCode.MAX_FRAME_SIZE and not (
        MIN_MAX_FRAME_SIZE <= value <= MAX_MAX_FRAME_SIZE
    ):
        _fail(f"max frame size {value} outside 16384..16777215")


def _fail(message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> NoReturn:
    raise RemoteProtocolError(message, code=code, stream_id=0)


class Settings:
    """One endpoint's settings values; attribute reads are the fast path for the connection."""

    __slots__ = (
        "_frames_applied",
        "enable_connect_protocol",
        "enable_push",
        "header_table_size",
        "initial_window_size",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
        "no_rfc7540_priorities",
    )

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams: int = UNLIMITED
        self.initial_window_size = 65_535
        self.max_frame_size = 16_384
        self.max_header_list_size: int = UNLIMITED
        self.enable_connect_protocol = 0
        self.no_rfc7540_priorities = 0
        self._frames_applied = 0

    def __getitem__(self, code: int) -> int:
        value: int = getattr(self, _ATTRS[code])
        return value

    def __repr__(self) -> str:
        return f"Settings({self.as_dict()!r})"

    def as_dict(self) -> dict[int, int]:
        return {code: getattr(self, name) for code, name in _ATTRS.items()}

    def non_default(self) -> list[tuple[int, int]]:
        """The values that differ from the RFC defaults, as pairs ready to send."""
        return [(code, value) for code, value in self.as_dict().items() if value != DEFAULTS[code]]

    def update(self, pairs: Pairs) -> Changes:
        """Apply pairs without validation; unknown ids are ignored. Return what changed.

        Later pairs win over earlier ones with the same id (§6.5.3: processed in order); the
        result maps id -> (value before, value after) for values that really changed.
        """
        before: dict[int, int] = {}
        for code, value in pairs:
            name = _ATTRS.get(code)
            if name is None:
                continue
            before.setdefault(code, getattr(self, name))
            setattr(self, name, value)
        return {code: (old, new) for code, old in before.items() if (new := self[code]) != old}

    def apply_received(self, pairs: Pairs, *, sender_is_server: bool = False) -> Changes:
        """Validate and apply the pairs of one received SETTINGS frame; return what changed."""
        pairs = list(pairs)
        for code, value in pairs:
            check_setting(code, value, sender_is_server=sender_is_server)
            self._check_sticky(code, value)
        self._frames_applied += 1
        return self.update(pairs)

    def _check_sticky(self, code: int, value: int) -> None:
        # RFC 8441 §3: a sender MUST NOT withdraw ENABLE_CONNECT_PROTOCOL once it sent 1.
        if code == SettingCode.ENABLE_CONNECT_PROTOCOL and value < self.enable_connect_protocol:
            _fail("SETTINGS_ENABLE_CONNECT_PROTOCOL changed from 1 to 0")
        # RFC 9218 §2.1: NO_RFC7540_PRIORITIES MUST NOT change after the first SETTINGS frame.
        if (
            code == SettingCode.NO_RFC7540_PRIORITIES
            and self._frames_applied
            and value != self.no_rfc7540_priorities
        ):
            _fail("SETTINGS_NO_RFC7540_PRIORITIES changed after the first SETTINGS")


class LocalSettings:
    """Our settings: the acknowledged values in force plus a FIFO of sent, unacked changes.

    §6.5.3: the values we send apply only once the peer's SETTINGS ACK arrives; ACKs come in
    the order our SETTINGS frames were sent, so each ACK applies the oldest pending frame.
    Until then the peer may still act on the older values (e.g. send frames up to the old
    max frame size), which is what ``highest`` is for.
    """

    __slots__ = ("_is_server", "_pending", "current")

    def __init__(self, *, is_server: bool) -> None:
        self.current = Settings()
        self._pending: deque[list[tuple[int, int]]] = deque()
        self._is_server = is_server

    @property
    def unacknowledged(self) -> int:
        """How many SETTINGS frames we sent that the peer has not acknowledged yet."""
        return len(self._pending)

    def propose(
        self, values: Mapping[int, int] | Mapping[SettingCode, int] | Pairs
    ) -> list[tuple[int, int]]:
        """Validate values we are about to send and queue them until ACKed.

        Returns the pairs to write with ``frames.write_settings``. Raises
        ``LocalProtocolError`` for a value the peer would have to reject.
        """
        pairs: list[tuple[int, int]] = list(
            values.items() if isinstance(values, Mapping) else values
        )
        for code, value in pairs:
            if not (0 <= code <= 0xFFFF and 0 <= value <= 0xFFFF_FFFF):
                raise LocalProtocolError(f"setting {code} = {value} does not fit the wire")
            try:
                check_setting(code, value, sender_is_server=self._is_server)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(str(exc), code=exc.code) from None
        self._pending.append(pairs)
        return pairs

    def acknowledge(self) -> Changes:
        """The peer ACKed a SETTINGS frame: apply our oldest pending one, return what changed.

        An ACK we did not ask for changes nothing (the RFC names no error for it).
        """
        if not self._pending:
            return {}
        return self.current.update(self._pending.popleft())

    def latest(self, code: int) -> int:
        """The value that will be in force once every pending frame is acknowledged."""
        value = self.current[code]
        for pairs in self._pending:
            for pending_code, pending_value in pairs:
                if pending_code == code:
                    value = pending_value
        return value

    def highest(self, code: int) -> int:
        """The largest of the value in force and every pending value (a safe receive limit)."""
        value = self.current[code]
        for pairs in self._pending:
            for pending_code, pending_value in pairs:
                if pending_code == code and pending_value > value:
                    value = pending_value
        return value
