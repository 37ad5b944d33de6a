"""Large DATA payloads leave the core by reference (``buffers_to_send``), never at the cost of
what reaches the wire: the frames stay in order, a mutable payload is still copied, and the
joined buffers are exactly what ``data_to_send`` returns and a third-party peer decodes."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from caboose.core.events import DataReceived, StreamEnded, TrailersReceived
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.frames import BytesLike, FrameReader
from caboose.core.h2.settings import SettingCode

from .rawpeer import REQUEST

BIG = 1 << 20  # a window this size lets a whole 1 MiB body out at once
BODY = bytes(range(256)) * 1024  # 256 KiB, not all one byte value


def responding_server() -> tuple[H2Connection, H2Connection, int]:
    """Our client and server after a GET and the server's head, with room for a large body."""
    client = H2Connection(
        client_side=True,
        local_settings={SettingCode.INITIAL_WINDOW_SIZE: BIG},
        connection_window=BIG,
    )
    server = H2Connection(client_side=False)
    client.initiate()
    server.initiate()
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, REQUEST, end_stream=True)
    while True:  # preface, SETTINGS and their ACKs, the request (empty bytes would be EOF)
        to_server, to_client = client.data_to_send(), server.data_to_send()
        if not to_server and not to_client:
            break
        if to_client:
            client.receive_data(bytes(to_client))
        if to_server:
            server.receive_data(bytes(to_server))
    server.send_head(stream_id, 200, [(b"content-type", b"application/octet-stream")])
    return client, server, stream_id


def received_body(client: H2Connection, wire: bytes) -> tuple[bytes, bool]:
    body = bytearray()
    ended = False
    for event in client.receive_data(wire):
        if isinstance(event, DataReceived):
            body += event.data
        ended = ended or isinstance(event, StreamEnded)
    return bytes(body), ended


def views_of(buffers: list[BytesLike], payload: object) -> list[memoryview]:
    return [b for b in buffers if isinstance(b, memoryview) and b.obj is payload]


def test_a_large_bytes_body_is_handed_over_uncopied_in_frame_sized_views() -> None:
    client, server, stream_id = responding_server()
    server.send_data(stream_id, BODY, end_stream=True)
    buffers = server.buffers_to_send()
    views = views_of(buffers, BODY)
    assert [len(v) for v in views] == [16_384] * (len(BODY) // 16_384)  # §4.2 frame size
    assert server.buffers_to_send() == []  # handed over once
    body, ended = received_body(client, b"".join(buffers))
    assert body == BODY and ended


def test_frames_keep_their_order_around_a_body_sent_by_reference() -> None:
    client, server, stream_id = responding_server()
    server.send_data(stream_id, b"small first")
    server.send_data(stream_id, BODY)
    server.send_data(stream_id, b"small last")
    server.send_trailers(stream_id, [(b"x-checksum", b"42")])
    wire = b"".join(server.buffers_to_send())
    reader = FrameReader(expect_preface=False)
    frames = reader.receive(wire)
    # the head, 18 DATA frames (one small, 16 of the body, one small), the trailers
    assert [frame[0] for frame in frames] == [1] + [0] * 18 + [1]
    events = client.receive_data(wire)
    data = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert data == b"small first" + BODY + b"small last"
    assert TrailersReceived(stream_id, [(b"x-checksum", b"42")]) in events


@pytest.mark.parametrize(
    "payload",
    [bytearray(BODY), memoryview(bytearray(BODY))],
    ids=["bytearray", "writable memoryview"],
)
def test_a_mutable_body_is_copied_so_the_sender_may_reuse_it(payload: BytesLike) -> None:
    client, server, stream_id = responding_server()
    server.send_data(stream_id, payload, end_stream=True)
    payload[:4] = b"XXXX"  # the app reuses its buffer as soon as send returns
    buffers = server.buffers_to_send()
    assert not [b for b in buffers if isinstance(b, memoryview)]
    body, ended = received_body(client, b"".join(buffers))
    assert body == BODY and ended


def test_a_read_only_view_of_bytes_rides_by_reference() -> None:
    client, server, stream_id = responding_server()
    server.send_data(stream_id, memoryview(BODY)[1:], end_stream=True)
    buffers = server.buffers_to_send()
    assert len(views_of(buffers, BODY)) == 16
    body, _ = received_body(client, b"".join(buffers))
    assert body == BODY[1:]


def test_a_small_body_is_copied_into_one_buffer() -> None:
    _, server, stream_id = responding_server()
    server.send_data(stream_id, b"x" * 4095, end_stream=True)
    buffers = server.buffers_to_send()
    assert len(buffers) == 1 and isinstance(buffers[0], bytearray)


def test_data_to_send_joins_what_buffers_to_send_would_give() -> None:
    client, server, stream_id = responding_server()
    server.send_data(stream_id, BODY, end_stream=True)
    wire = server.data_to_send()
    assert isinstance(wire, bytes) and server.data_to_send() == b""
    body, ended = received_body(client, wire)
    assert body == BODY and ended


def test_the_h2_library_reads_a_body_sent_by_reference() -> None:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    theirs = h2.connection.H2Connection(config=config)
    theirs.initiate_connection()
    theirs.increment_flow_control_window(BIG)
    theirs.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: BIG})
    ours = H2Connection(client_side=False)
    ours.initiate()
    theirs.send_headers(1, REQUEST, end_stream=True)
    ours.receive_data(theirs.data_to_send())
    theirs.receive_data(bytes(ours.data_to_send()))
    ours.receive_data(theirs.data_to_send())  # their SETTINGS ACK and window
    ours.send_head(1, 200, [])
    ours.send_data(1, BODY, end_stream=True)
    events = theirs.receive_data(b"".join(ours.buffers_to_send()))
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == BODY
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
