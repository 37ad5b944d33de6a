"""A scripted HTTP/2 peer for conformance tests: crafts frames, reads back what we answer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from caboose.core.events import ConnectionTerminated, Event, PingReceived
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import ConnectionState, H2Connection
from caboose.core.h2.hpack import Encoder
from caboose.errors import ErrorCode

T = fr.FrameType
Fields = list[tuple[bytes, bytes]]
Frame = tuple[int, int, int, bytes]

REQUEST: Fields = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"example.com"),
]
POST: Fields = [(b":method", b"POST"), *REQUEST[1:]]


def raw(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, byte for byte, from its four fields (the length is computed)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([frame_type, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def read_frames(data: bytes) -> list[Frame]:
    return [
        (t, f, s, bytes(p)) for t, f, s, p in fr.FrameReader(max_frame_size=2**24 - 1).receive(data)
    ]


class RawPeer:
    """Drives one of our connections with hand-made frames; ``encode`` has its own HPACK state."""

    def __init__(self, conn: H2Connection) -> None:
        self.conn = conn
        self.encoder = Encoder()
        self.events: list[Event] = []
        self.conn.initiate()
        self.our_preface = self.conn.data_to_send()

    def handshake(self, settings: Iterable[tuple[int, int]] = ()) -> Self:
        """The peer's preface (with ``settings``) and its ACK of ours; output drained."""
        data = bytearray(b"" if self.conn.client_side else fr.PREFACE)
        fr.write_settings(data, list(settings))
        fr.write_settings_ack(data)
        self.send(bytes(data))
        self.conn.data_to_send()
        self.events.clear()
        return self

    # -- driving -----------------------------------------------------------------------------

    def send(self, *chunks: bytes) -> list[Event]:
        events: list[Event] = []
        for chunk in chunks:
            events += self.conn.receive_data(chunk)
        self.events += events
        return events

    def output(self) -> list[Frame]:
        return read_frames(self.conn.data_to_send())

    # -- frame builders ------------------------------------------------------------------------

    def encode(self, fields: Fields) -> bytes:
        return self.encoder.encode(fields)

    def headers(
        self,
        stream_id: int,
        fields: Fields = REQUEST,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        block: bytes | None = None,
        priority: fr.Priority | None = None,
        pad_length: int | None = None,
    ) -> bytes:
        block = self.encode(fields) if block is None else block
        flags = (fr.FLAG_END_STREAM if end_stream else 0) | (
            fr.FLAG_END_HEADERS if end_headers else 0
        )
        body = bytearray()
        if pad_length is not None:
            flags |= fr.FLAG_PADDED
            body.append(pad_length)
        if priority is not None:
            flags |= fr.FLAG_PRIORITY
            dependency = priority.depends_on | (0x8000_0000 if priority.exclusive else 0)
            body += dependency.to_bytes(4, "big") + bytes([priority.weight - 1])
        body += block
        body += bytes(pad_length or 0)
        return raw(T.HEADERS, flags, stream_id, bytes(body))

    def continuation(self, stream_id: int, block: bytes, *, end_headers: bool = True) -> bytes:
        return raw(T.CONTINUATION, fr.FLAG_END_HEADERS if end_headers else 0, stream_id, block)

    @staticmethod
    def data(
        stream_id: int, payload: bytes, *, end_stream: bool = False, pad_length: int | None = None
    ) -> bytes:
        out = bytearray()
        fr.write_data(out, stream_id, payload, end_stream=end_stream, pad_length=pad_length)
        return bytes(out)

    @staticmethod
    def rst(stream_id: int, code: int = ErrorCode.CANCEL) -> bytes:
        return raw(T.RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))

    @staticmethod
    def window_update(stream_id: int, increment: int) -> bytes:
        return raw(T.WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))

    @staticmethod
    def settings(*pairs: tuple[int, int]) -> bytes:
        return raw(T.SETTINGS, 0, 0, fr.settings_payload(list(pairs)))

    @staticmethod
    def ping(data: bytes = b"12345678", *, ack: bool = False) -> bytes:
        return raw(T.PING, fr.FLAG_ACK if ack else 0, 0, data)

    @staticmethod
    def priority(stream_id: int, depends_on: int = 0, weight: int = 16) -> bytes:
        return raw(T.PRIORITY, 0, stream_id, depends_on.to_bytes(4, "big") + bytes([weight - 1]))

    # -- verdicts ------------------------------------------------------------------------------

    def expect_connection_error(self, code: int, *, last_stream_id: int | None = None) -> None:
        """GOAWAY with ``code`` queued, ConnectionTerminated last, connection closed (§5.4.1)."""
        frames = self.output()
        goaways = [f for f in frames if f[0] == T.GOAWAY]
        assert goaways, f"no GOAWAY in {frames}"
        payload = goaways[-1][3]
        got = int.from_bytes(payload[4:8], "big")
        assert got == code, f"GOAWAY {ErrorCode(got).name} != {ErrorCode(code).name}"
        if last_stream_id is not None:
            assert int.from_bytes(payload[:4], "big") == last_stream_id
        assert self.events and isinstance(self.events[-1], ConnectionTerminated)
        assert self.events[-1].error_code == code
        assert self.conn.state is ConnectionState.CLOSED
        assert self.conn.receive_data(self.ping()) == []  # nothing more is processed

    def expect_stream_error(self, stream_id: int, code: int) -> None:
        """RST_STREAM with ``code`` on ``stream_id``, no GOAWAY, connection alive (§5.4.2)."""
        frames = self.output()
        assert not [f for f in frames if f[0] == T.GOAWAY], f"unexpected GOAWAY in {frames}"
        resets = [f for f in frames if f[0] == T.RST_STREAM and f[2] == stream_id]
        assert resets, f"no RST_STREAM on {stream_id} in {frames}"
        got = int.from_bytes(resets[-1][3], "big")
        assert got == code, f"RST_STREAM {ErrorCode(got).name} != {ErrorCode(code).name}"
        self.expect_alive()

    def expect_alive(self) -> None:
        """The connection still answers a PING."""
        assert self.conn.state is ConnectionState.OPEN
        events = self.send(self.ping(b"alive!!!"))
        assert events == [PingReceived(b"alive!!!")], events
        assert (T.PING, fr.FLAG_ACK, 0, b"alive!!!") in self.output()

    def expect_nothing(self) -> None:
        """No frame was queued (the received frame was ignored) and the connection lives."""
        assert self.output() == []
        self.expect_alive()


class RawClient(RawPeer):
    """A scripted client in front of our server role."""

    def __init__(self, **server_kwargs: Any) -> None:
        super().__init__(H2Connection(client_side=False, **server_kwargs))
        self.server_preface = read_frames(self.our_preface)


class RawServer(RawPeer):
    """A scripted server behind our client role."""

    def __init__(self, **client_kwargs: Any) -> None:
        super().__init__(H2Connection(client_side=True, **client_kwargs))

    def request(self, fields: Fields = REQUEST, *, end_stream: bool = True) -> int:
        """Have our client send a request; return its stream id (output drained)."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, fields, end_stream=end_stream)
        self.conn.data_to_send()
        return stream_id
