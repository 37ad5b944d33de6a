"""WebSocket frames written by hand (RFC 6455 §5.2), for what a client library refuses to
send: unmasked frames, reserved bits and opcodes, bad close payloads."""

from __future__ import annotations

import os
import struct

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One frame: FIN, RSV1-3 (``rsv`` as three bits), the opcode, the length, the mask."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def close_code(data: bytes) -> int | None:
    """The status code of the server frame that starts ``data`` if it is a close, else None."""
    if len(data) < 4 or data[0] != 0x88:  # FIN + CLOSE, unmasked (RFC 6455 §5.1)
        return None
    return int(struct.unpack("!H", data[2:4])[0])


# The violations every server must answer with a close (RFC 6455 §5.2, §5.5, §7.4.1), and
# the code it must use.
VIOLATIONS = {
    "invalid UTF-8": (client_frame(TEXT, b"ok \xff\xfe"), 1007),
    "unmasked": (client_frame(TEXT, b"hi", masked=False), 1002),
    "RSV1 without an extension": (client_frame(TEXT, b"hi", rsv=4), 1002),
    "RSV3": (client_frame(BINARY, b"hi", rsv=1), 1002),
    "reserved opcode 0x3": (client_frame(0x3, b"hi"), 1002),
    "reserved control opcode 0xB": (client_frame(0xB), 1002),
    "fragmented ping": (client_frame(PING, b"x", fin=False), 1002),
    "ping over 125 bytes": (client_frame(PING, bytes(126)), 1002),
    "continuation with nothing to continue": (client_frame(0x0, b"x"), 1002),
    "close code 1005 on the wire": (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),
    "close with a 1-byte payload": (client_frame(CLOSE, b"\x03"), 1002),
}
