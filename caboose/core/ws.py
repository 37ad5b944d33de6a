"""WebSocket frames to messages and back (RFC 6455 §5-§8), sans-I/O, server side.

The same for both HTTP versions: after the opening handshake (``ws_handshake.py``), the bytes
of an HTTP/1.1 connection and the DATA of an RFC 8441 stream are one WebSocket byte stream.
Frames are parsed and written by the sans-I/O protocol of the ``websockets`` library (masking
in C, permessage-deflate, pings answered, the close echoed); this module turns its frames
into the events a server session needs:

- ``MessageReceived``: a whole message, its fragments joined, text checked as UTF-8 while it
  arrives (§8.1: a bad byte fails the connection with 1007 before the message ends);
- ``CloseReceived``: the peer's close frame, with its code (1005 when it has none, §7.1.5);
- ``PongReceived``: the answer to a keep-alive ping;
- ``Failed``: the peer broke the protocol and we closed with a code (1002, 1007, 1009).

``data_to_send()`` gives the bytes to write; once it has returned them all, ``ended`` says
the byte stream is to be ended now (TCP FIN or END_STREAM: §7.1.1, the server ends it first).
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass

from websockets.extensions import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

INVALID_TEXT = 1007  # RFC 6455 §7.4.1
NO_STATUS = 1005  # §7.1.5: a close frame without a code
ABNORMAL = 1006  # §7.1.5: the connection ended without a close frame


@dataclass(slots=True)
class MessageReceived:
    data: bytes | str


@dataclass(slots=True)
class CloseReceived:
    code: int
    reason: str


@dataclass(slots=True)
class PongReceived:
    data: bytes


@dataclass(slots=True)
class Failed:
    code: int
    reason: str


WSEvent = MessageReceived | CloseReceived | PongReceived | Failed


_FIN = 0x80
_SHORT, _MEDIUM = struct.Struct("!BB"), struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def _head(opcode: int, length: int) -> bytes:
    """The head of an unmasked final frame (RFC 6455 §5.2): servers never mask (§5.1)."""
    if length < 126:
        return _SHORT.pack(_FIN | opcode, length)
    if length < 1 << 16:
        return _MEDIUM.pack(_FIN | opcode, 126, length)
    return _LONG.pack(_FIN | opcode, 127, length)


class _ServerProtocol(Protocol):
    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            # §5.4: control frames may come between the fragments of a message, and a close
            # simply ends the socket with the message unfinished (websockets would call the
            # unfinished message a protocol error and answer 1002; Autobahn case 7.1.5).
            self.current_size = None
        super().recv_frame(frame)


class WSConnection:
    """One open WebSocket, server side: bytes in, events out; commands queue bytes out."""

    __slots__ = ("_failure_told", "_frames", "_parts", "_protocol", "_text", "ended")

    def __init__(self, *, max_size: int | None, extensions: list[Extension]) -> None:
        protocol = _ServerProtocol(Side.SERVER, state=State.OPEN, max_size=max_size)
        protocol.extensions = extensions
        self._protocol = protocol
        self._parts: list[bytes] = []  # the fragments of the message being received
        self._text: codecs.IncrementalDecoder | None = None  # set while a text message arrives
        self._failure_told = False
        self._frames: list[bytes] = []  # messages written here (see send_message)
        self.ended = False  # the byte stream is to be ended (data_to_send said so)

    @property
    def open(self) -> bool:
        """Messages may be sent: no close frame has gone out yet."""
        return self._protocol.state is State.OPEN

    @property
    def closing_done(self) -> bool:
        """The closing handshake is over (both close frames), or the connection failed."""
        protocol = self._protocol
        return protocol.state is State.CLOSED or protocol.close_expected()

    @property
    def close_received(self) -> bool:
        return self._protocol.close_rcvd is not None

    # -- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[WSEvent]:
        self._protocol.receive_data(data)
        return self._events()

    def receive_eof(self) -> list[WSEvent]:
        """The peer ended its byte stream (TCP FIN, END_STREAM)."""
        self._protocol.receive_eof()
        return self._events()

    def _events(self) -> list[WSEvent]:
        protocol = self._protocol
        events: list[WSEvent] = []
        for frame in protocol.events_received():
            if isinstance(frame, Frame) and not self._failure_told:
                self._on_frame(frame, events)
        if protocol.parser_exc is not None and not self._failure_told:
            self._failure_told = True
            sent = protocol.close_sent
            if sent is not None:
                events.append(Failed(sent.code, sent.reason))
        return events

    def _on_frame(self, frame: Frame, events: list[WSEvent]) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT:
            self._text = codecs.getincrementaldecoder("utf-8")()
        elif opcode is Opcode.BINARY:
            self._text = None
        elif opcode is Opcode.PONG:
            events.append(PongReceived(bytes(frame.data)))
            return
        elif opcode is Opcode.CLOSE:
            received = self._protocol.close_rcvd
            if received is None:
                events.append(CloseReceived(NO_STATUS, ""))
            else:
                events.append(CloseReceived(received.code, received.reason))
            return
        elif opcode is not Opcode.CONT:
            return  # PING: the protocol answered it
        text = self._text
        if text is not None:
            try:
                text.decode(frame.data, final=frame.fin)  # §8.1, as it arrives
            except UnicodeDecodeError:
                self.fail(INVALID_TEXT, "invalid UTF-8 in a text message")
                events.append(Failed(INVALID_TEXT, "invalid UTF-8 in a text message"))
                return
        if frame.fin and not self._parts:  # a message in one frame: no joining
            data = bytes(frame.data)
        else:
            self._parts.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(self._parts)
            self._parts = []
        events.append(MessageReceived(data.decode() if text is not None else data))

    # -- commands --------------------------------------------------------------------------------

    def send_message(self, data: bytes | str) -> None:
        """One final frame. Without an extension its bytes are just a head and the payload,
        written here (a tenth of the library's cost per message, which matters for small
        ones); with permessage-deflate the library encodes it."""
        protocol = self._protocol
        payload = data.encode() if isinstance(data, str) else data
        opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        if protocol.extensions:
            protocol.send_frame(Frame(opcode, payload))
        else:
            self._frames.append(_head(opcode, len(payload)) + payload)

    def send_ping(self, payload: bytes) -> None:
        self._protocol.send_ping(payload)

    def send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake (§7.1.2); the peer's close frame finishes it."""
        self._protocol.send_close(code, reason)

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (§7.1.7): a close frame with ``code``, then the end."""
        self._failure_told = True
        self._protocol.fail(code, reason)

    def data_to_send(self) -> bytes:
        """Messages come out before what the protocol queued (pongs, the close, the end):
        messages are only sent while the socket is open, so none can follow our close."""
        chunks = self._protocol.data_to_send()
        if self._frames:
            chunks = self._frames + chunks
            self._frames = []
        if not chunks:
            return b""
        if chunks[-1] == b"":  # the protocol's end-of-stream marker
            self.ended = True
        return b"".join(chunks) if len(chunks) > 1 else chunks[0]
