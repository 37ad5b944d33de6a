"""HTTP/2 frame codec (RFC 9113 §4, §6): split received bytes into frames; decode, encode.

Received frames are plain tuples ``(frame_type, flags, stream_id, payload)`` with ``payload`` a
``memoryview``; no object is built per frame. Each ``parse_*`` function validates one frame type
and raises ``RemoteProtocolError`` whose ``stream_id`` is 0 for a connection error and the
stream's id for a stream error (RFC 9113 §5.4). Serialisers append to a caller's ``bytearray``
so that a loop turn's output is built in one buffer and written once.

Frames of unknown type are returned by ``FrameReader`` like any other; the caller MUST ignore
them (§4.1, §5.5). The reader does not know about header-block sequencing (CONTINUATION must
follow HEADERS on the same stream, §6.10) nor about which frame must come first (§3.4); the
connection enforces both.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final, NamedTuple

from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

BytesLike = bytes | bytearray | memoryview
Frame = tuple[int, int, int, memoryview]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # §3.4, the client connection preface
FRAME_HEADER_SIZE: Final = 9
DEFAULT_MAX_FRAME_SIZE: Final = 16_384  # §6.5.2 SETTINGS_MAX_FRAME_SIZE initial value
MAX_FRAME_SIZE_LIMIT: Final = 16_777_215  # 2**24 - 1, the largest length the header can carry
MAX_WINDOW_INCREMENT: Final = 2**31 - 1
STREAM_ID_MASK: Final = 0x7FFF_FFFF  # the reserved R bit is ignored on receipt (§4.1)


class FrameType(IntEnum):
    """Frame types (RFC 9113 §6)."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# Plain-int twins for the hot serialisers: an enum member lookup costs ~60 ns more.
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_RST_STREAM: Final = 0x3
_CONTINUATION: Final = 0x9
_WINDOW_UPDATE: Final = 0x8

# Flags are plain ints: IntFlag arithmetic builds new members and is slow on the hot path.
FLAG_END_STREAM: Final = 0x1  # DATA, HEADERS
FLAG_ACK: Final = 0x1  # SETTINGS, PING
FLAG_END_HEADERS: Final = 0x4  # HEADERS, PUSH_PROMISE, CONTINUATION
FLAG_PADDED: Final = 0x8  # DATA, HEADERS, PUSH_PROMISE
FLAG_PRIORITY: Final = 0x20  # HEADERS

# Bytes 0-3 hold length (24 bits) and type (8 bits); then flags (8) and stream id (32).
_HEADER = struct.Struct(">IBI")
_U32 = struct.Struct(">I")
_U32_PAIR = struct.Struct(">II")
_PRIORITY = struct.Struct(">IB")
_SETTING = struct.Struct(">HI")


class Priority(NamedTuple):
    """RFC 7540 priority fields (deprecated by RFC 9113 §5.3.2 but still parsed).

    ``weight`` is the effective weight 1..256, i.e. the wire octet plus one.
    """

    depends_on: int
    weight: int
    exclusive: bool


def _conn_error(message: str, code: ErrorCode) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=code, stream_id=0)


def match_preface(data: BytesLike) -> bool | None:
    """Tell whether ``data`` opens with the client preface: True, False, or None (need more)."""
    n = min(len(data), len(PREFACE))
    if bytes(data[:n]) != PREFACE[:n]:
        return False
    return True if n == len(PREFACE) else None


class FrameReader:
    """Accumulates received bytes and returns complete frames.

    Memory safety: a ``memoryview`` over a ``bytearray`` forbids resizing it (BufferError),
    and a resized buffer would change under earlier views. So payload views always point
    into an immutable ``bytes`` object: the received chunk itself when nothing was buffered
    (no copy), otherwise one ``bytes`` copy of the buffer per ``receive`` call. Only the tail
    of an incomplete frame is kept in the internal ``bytearray``; while a large frame is
    still arriving, bytes are appended without re-scanning or copying (no quadratic cost).

    ``max_frame_size`` is our SETTINGS_MAX_FRAME_SIZE; the connection updates it. A frame
    announcing a larger length is refused as soon as its header arrives (§4.2), before its
    payload is buffered. After any error the reader's state is undefined: the connection
    is over. Frames that preceded the bad one in the same call are dropped with it; that is
    safe because GOAWAY then names only streams the connection really processed (§6.8).
    """

    __slots__ = ("_buf", "_need", "_preface_pending", "max_frame_size")

    def __init__(
        self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, expect_preface: bool = False
    ) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._need = 0  # total buffered bytes needed before the next frame can complete
        self._preface_pending = expect_preface

    @property
    def preface_received(self) -> bool:
        """True once the client preface arrived intact (or when none was expected)."""
        return not self._preface_pending

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def receive(self, data: BytesLike) -> list[Frame]:
        """Take received bytes; return every frame now complete, in order."""
        buf = self._buf
        if self._preface_pending:
            buf += data
            if not self._take_preface():
                return []
        elif buf:
            buf += data
            if len(buf) < self._need:
                return []  # still inside one frame: no copy, no scan
        else:
            # Fast path: nothing buffered, so views can point into the received chunk.
            return self._split(data if type(data) is bytes else bytes(data))
        chunk = bytes(buf)
        buf.clear()
        return self._split(chunk)

    def _take_preface(self) -> bool:
        # §3.4: anything but the exact preface is a connection error of type PROTOCOL_ERROR;
        # compare as bytes arrive so a non-HTTP/2 peer is refused at once.
        buf = self._buf
        status = match_preface(buf)
        if status is False:
            raise _conn_error("invalid HTTP/2 connection preface", ErrorCode.PROTOCOL_ERROR)
        if status is None:
            return False
        del buf[: len(PREFACE)]
        self._preface_pending = False
        return True

    def _split(self, data: bytes) -> list[Frame]:
        view = memoryview(data)
        frames: list[Frame] = []
        unpack = _HEADER.unpack_from
        max_size = self.max_frame_size
        offset = 0
        total = len(data)
        need = FRAME_HEADER_SIZE
        while total - offset >= FRAME_HEADER_SIZE:
            length_type, flags, stream_id = unpack(data, offset)
            length = length_type >> 8
            if length > max_size:
                # §4.2: too large for our SETTINGS_MAX_FRAME_SIZE; treated as a connection
                # error for every type (required for most, permitted for the rest).
                raise _conn_error(
                    f"frame of {length} bytes exceeds max frame size {max_size}",
                    ErrorCode.FRAME_SIZE_ERROR,
                )
            start = offset + FRAME_HEADER_SIZE
            end = start + length
            if end > total:
                need = end - offset
                break
            frames.append((length_type & 0xFF, flags, stream_id & STREAM_ID_MASK, view[start:end]))
            offset = end
        if offset < total:
            self._buf += view[offset:]
        self._need = need
        return frames


# --- payload decoders ---------------------------------------------------------------------


def _require_stream(name: str, stream_id: int) -> None:
    if stream_id == 0:
        raise _conn_error(f"{name} frame on stream 0", ErrorCode.PROTOCOL_ERROR)


def _require_connection(name: str, stream_id: int) -> None:
    if stream_id != 0:
        raise _conn_error(f"{name} frame on stream {stream_id}", ErrorCode.PROTOCOL_ERROR)


def strip_padding(flags: int, payload: memoryview) -> memoryview:
    """Remove the Pad Length octet and the padding of a PADDED frame (§6.1, §6.2, §6.6)."""
    if not flags & FLAG_PADDED:
        return payload
    if not payload:
        raise _conn_error("padded frame without a pad length", ErrorCode.FRAME_SIZE_ERROR)
    pad_length = payload[0]
    if pad_length >= len(payload):
        # §6.1: padding as long as the payload or longer is a connection PROTOCOL_ERROR.
        raise _conn_error("padding exceeds the frame payload", ErrorCode.PROTOCOL_ERROR)
    return payload[1 : len(payload) - pad_length]


def parse_data(stream_id: int, flags: int, payload: memoryview) -> memoryview:
    """DATA (§6.1): the data without padding. Flow control counts the whole payload."""
    _require_stream("DATA", stream_id)
    return strip_padding(flags, payload)


def _priority_fields(view: memoryview, offset: int) -> Priority:
    dependency, weight = _PRIORITY.unpack_from(view, offset)
    return Priority(dependency & STREAM_ID_MASK, weight + 1, bool(dependency >> 31))


def parse_headers_payload(
    stream_id: int, flags: int, payload: memoryview
) -> tuple[Priority | None, memoryview]:
    """HEADERS (§6.2): priority fields (if the PRIORITY flag is set) and the block fragment.

    A dependency on the stream itself is NOT raised here: the field block must still be
    decoded to keep HPACK state in sync (§4.3), so the connection calls ``check_priority``
    once the complete block has been decoded.
    """
    _require_stream("HEADERS", stream_id)
    body = strip_padding(flags, payload)
    if not flags & FLAG_PRIORITY:
        return None, body
    if len(body) < 5:
        raise _conn_error("HEADERS too short for its priority fields", ErrorCode.FRAME_SIZE_ERROR)
    return _priority_fields(body, 0), body[5:]


def check_priority(stream_id: int, priority: Priority) -> None:
    """§5.3.1: a stream cannot depend on itself; that is a stream error PROTOCOL_ERROR."""
    if priority.depends_on == stream_id:
        raise RemoteProtocolError(
            f"stream {stream_id} depends on itself",
            code=ErrorCode.PROTOCOL_ERROR,
            stream_id=stream_id,
        )


def parse_priority(stream_id: int, payload: memoryview) -> Priority:
    """PRIORITY (§6.3). A wrong length is a *stream* error FRAME_SIZE_ERROR."""
    _require_stream("PRIORITY", stream_id)
    if len(payload) != 5:
        raise RemoteProtocolError(
            f"PRIORITY length {len(payload)} != 5",
            code=ErrorCode.FRAME_SIZE_ERROR,
            stream_id=stream_id,
        )
    priority = _priority_fields(payload, 0)
    check_priority(stream_id, priority)
    return priority


def parse_rst_stream(stream_id: int, payload: memoryview) -> int:
    """RST_STREAM (§6.4): the error code, as an int (unknown codes are legal, §7)."""
    _require_stream("RST_STREAM", stream_id)
    if len(payload) != 4:
        raise _conn_error(f"RST_STREAM length {len(payload)} != 4", ErrorCode.FRAME_SIZE_ERROR)
    code: int = _U32.unpack_from(payload)[0]
    return code


def parse_settings(stream_id: int, flags: int, payload: memoryview) -> list[tuple[int, int]]:
    """SETTINGS (§6.5): ``(id, value)`` pairs in wire order; empty for an ACK.

    Values are validated by ``settings.Settings.apply_received``, not here.
    """
    _require_connection("SETTINGS", stream_id)
    size = len(payload)
    if flags & FLAG_ACK:
        if size:
            raise _conn_error("SETTINGS ACK with a payload", ErrorCode.FRAME_SIZE_ERROR)
        return []
    if size % 6:
        raise _conn_error(f"SETTINGS length {size} not a multiple of 6", ErrorCode.FRAME_SIZE_ERROR)
    return list(_SETTING.iter_unpack(payload))


def parse_push_promise(stream_id: int, flags: int, payload: memoryview) -> tuple[int, memoryview]:
    """PUSH_PROMISE (§6.6): the promised stream id and the field block fragment."""
    _require_stream("PUSH_PROMISE", stream_id)
    body = strip_padding(flags, payload)
    if len(body) < 4:
        raise _conn_error("PUSH_PROMISE too short", ErrorCode.FRAME_SIZE_ERROR)
    promised: int = _U32.unpack_from(body)[0]
    return promised & STREAM_ID_MASK, body[4:]


def parse_ping(stream_id: int, payload: memoryview) -> bytes:
    """PING (§6.7): the 8 opaque octets. The caller reads FLAG_ACK itself."""
    _require_connection("PING", stream_id)
    if len(payload) != 8:
        raise _conn_error(f"PING length {len(payload)} != 8", ErrorCode.FRAME_SIZE_ERROR)
    return bytes(payload)


def parse_goaway(stream_id: int, payload: memoryview) -> tuple[int, int, bytes]:
    """GOAWAY (§6.8): ``(last_stream_id, error_code, debug_data)``."""
    _require_connection("GOAWAY", stream_id)
    if len(payload) < 8:
        raise _conn_error(f"GOAWAY length {len(payload)} < 8", ErrorCode.FRAME_SIZE_ERROR)
    last_stream_id, code = _U32_PAIR.unpack_from(payload)
    return last_stream_id & STREAM_ID_MASK, code, bytes(payload[8:])


def parse_window_update(stream_id: int, payload: memoryview) -> int:
    """WINDOW_UPDATE (§6.9): the increment, 1..2**31-1."""
    if len(payload) != 4:
        raise _conn_error(f"WINDOW_UPDATE length {len(payload)} != 4", ErrorCode.FRAME_SIZE_ERROR)
    increment: int = _U32.unpack_from(payload)[0] & STREAM_ID_MASK
    if increment == 0:
        # §6.9: a stream error on a stream, a connection error on the connection window.
        raise RemoteProtocolError(
            "WINDOW_UPDATE increment of 0", code=ErrorCode.PROTOCOL_ERROR, stream_id=stream_id
        )
    return increment


def parse_continuation(stream_id: int, payload: memoryview) -> memoryview:
    """CONTINUATION (§6.10): the field block fragment."""
    _require_stream("CONTINUATION", stream_id)
    return payload


# --- serialisers: each appends one or more whole frames to ``out`` ----------------------------


def write_frame(
    out: bytearray, frame_type: int, flags: int, stream_id: int, payload: BytesLike = b""
) -> None:
    """Append one frame of any type, extension types included."""
    out += _HEADER.pack((len(payload) << 8) | frame_type, flags, stream_id)
    out += payload


def _check_pad(pad_length: int) -> None:
    # Checked before anything is appended, so a refused call leaves ``out`` untouched.
    if not 0 <= pad_length <= 255:
        raise LocalProtocolError(f"pad length {pad_length} outside 0..255")


def write_data(
    out: bytearray,
    stream_id: int,
    data: BytesLike,
    *,
    end_stream: bool = False,
    pad_length: int | None = None,
) -> None:
    """Append a DATA frame; the caller keeps ``data`` within the peer's max frame size."""
    flags = FLAG_END_STREAM if end_stream else 0
    if pad_length is None:
        out += _HEADER.pack((len(data) << 8) | _DATA, flags, stream_id)
        out += data
        return
    _check_pad(pad_length)
    length = 1 + len(data) + pad_length
    out += _HEADER.pack((length << 8) | _DATA, flags | FLAG_PADDED, stream_id)
    out.append(pad_length)
    out += data
    out += bytes(pad_length)


def data_frame_header(stream_id: int, length: int, end_stream: bool) -> bytes:
    """The header of an unpadded DATA frame whose ``length`` payload bytes the caller sends
    right after it (a body queued by reference)."""
    flags = FLAG_END_STREAM if end_stream else 0
    return _HEADER.pack((length << 8) | _DATA, flags, stream_id)


def _write_block(
    out: bytearray,
    first_type: int,
    flags: int,
    stream_id: int,
    prefix: bytes,
    block: BytesLike,
    max_frame_size: int,
    pad_length: int | None,
) -> None:
    # §4.3: a field block is one HEADERS/PUSH_PROMISE then CONTINUATIONs, END_HEADERS last.
    overhead = len(prefix)
    if pad_length is not None:
        _check_pad(pad_length)
        overhead += 1 + pad_length
        flags |= FLAG_PADDED
    room = max_frame_size - overhead
    if room < 0 or (room == 0 and block):
        raise LocalProtocolError("max frame size leaves no room for the field block")
    if len(block) <= room:  # the common case: one frame, no slicing
        first: BytesLike = block
        rest = memoryview(b"")
        flags |= FLAG_END_HEADERS
    else:
        view = memoryview(block)
        first, rest = view[:room], view[room:]
    out += _HEADER.pack(((overhead + len(first)) << 8) | first_type, flags, stream_id)
    if pad_length is not None:
        out.append(pad_length)
    out += prefix
    out += first
    if pad_length:
        out += bytes(pad_length)
    while rest:
        chunk, rest = rest[:max_frame_size], rest[max_frame_size:]
        last = FLAG_END_HEADERS if not rest else 0
        out += _HEADER.pack((len(chunk) << 8) | _CONTINUATION, last, stream_id)
        out += chunk


def write_headers(
    out: bytearray,
    stream_id: int,
    block: BytesLike,
    *,
    end_stream: bool = False,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    priority: Priority | None = None,
    pad_length: int | None = None,
) -> None:
    """Append HEADERS (+ CONTINUATION frames when ``block`` exceeds the peer's max frame size).

    END_STREAM goes on the HEADERS frame (§8.1), END_HEADERS on the last frame only.
    """
    flags = FLAG_END_STREAM if end_stream else 0
    prefix = b""
    if priority is not None:
        flags |= FLAG_PRIORITY
        prefix = _priority_bytes(priority)
    _write_block(out, _HEADERS, flags, stream_id, prefix, block, max_frame_size, pad_length)


def write_push_promise(
    out: bytearray,
    stream_id: int,
    promised_stream_id: int,
    block: BytesLike,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    pad_length: int | None = None,
) -> None:
    """Append PUSH_PROMISE (+ CONTINUATION frames), promising ``promised_stream_id``."""
    prefix = _U32.pack(promised_stream_id)
    _write_block(
        out, FrameType.PUSH_PROMISE, 0, stream_id, prefix, block, max_frame_size, pad_length
    )


def _priority_bytes(priority: Priority) -> bytes:
    if not 1 <= priority.weight <= 256:
        raise LocalProtocolError(f"priority weight {priority.weight} outside 1..256")
    dependency = priority.depends_on | (0x8000_0000 if priority.exclusive else 0)
    return _PRIORITY.pack(dependency, priority.weight - 1)


def write_priority(out: bytearray, stream_id: int, priority: Priority) -> None:
    """Append a PRIORITY frame (§6.3)."""
    write_frame(out, FrameType.PRIORITY, 0, stream_id, _priority_bytes(priority))


def write_rst_stream(out: bytearray, stream_id: int, error_code: int) -> None:
    """Append an RST_STREAM frame (§6.4)."""
    out += _HEADER.pack((4 << 8) | _RST_STREAM, 0, stream_id)
    out += _U32.pack(error_code)


def settings_payload(settings: list[tuple[int, int]]) -> bytes:
    """The payload of a SETTINGS frame: 6 octets per ``(id, value)`` pair (§6.5.1)."""
    return b"".join([_SETTING.pack(code, value) for code, value in settings])


def write_settings(out: bytearray, settings: list[tuple[int, int]]) -> None:
    """Append a SETTINGS frame carrying ``settings`` in order."""
    write_frame(out, FrameType.SETTINGS, 0, 0, settings_payload(settings))


def write_settings_ack(out: bytearray) -> None:
    """Append an empty SETTINGS frame with ACK set (§6.5.3)."""
    out += _HEADER.pack(FrameType.SETTINGS, FLAG_ACK, 0)


def write_ping(out: bytearray, data: BytesLike, *, ack: bool = False) -> None:
    """Append a PING frame; ``data`` is exactly 8 octets (§6.7)."""
    if len(data) != 8:
        raise LocalProtocolError("PING data must be 8 octets")
    write_frame(out, FrameType.PING, FLAG_ACK if ack else 0, 0, data)


def write_goaway(
    out: bytearray, last_stream_id: int, error_code: int, debug_data: BytesLike = b""
) -> None:
    """Append a GOAWAY frame (§6.8)."""
    length = 8 + len(debug_data)
    out += _HEADER.pack((length << 8) | FrameType.GOAWAY, 0, 0)
    out += _U32_PAIR.pack(last_stream_id, error_code)
    out += debug_data


def write_window_update(out: bytearray, stream_id: int, increment: int) -> None:
    """Append a WINDOW_UPDATE frame; ``increment`` is 1..2**31-1 (§6.9)."""
    if not 1 <= increment <= MAX_WINDOW_INCREMENT:
        raise LocalProtocolError(f"window increment {increment} outside 1..2**31-1")
    out += _HEADER.pack((4 << 8) | _WINDOW_UPDATE, 0, stream_id)
    out += _U32.pack(increment)
