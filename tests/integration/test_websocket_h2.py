"""WebSocket over HTTP/2 (RFC 8441) against a real server.

The peer is the python-hyper ``h2`` library for the HTTP/2 side and the client half of the
``websockets`` sans-I/O protocol for the frames inside the stream's DATA: two codecs we did
not write. Raw frames cover what they refuse to send.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import zlib
from typing import Any

import h2.settings
import pytest
from fastapi import FastAPI, WebSocket
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from tests.h2peer import (
    CANCEL,
    PROTOCOL_ERROR,
    H2Peer,
    RawPeer,
    StreamLog,
    data,
    headers,
    settle,
)
from tests.serving import running
from tests.wsframes import BINARY, CLOSE, VIOLATIONS, client_frame, close_code

ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL

seen: list[Any] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain " + scope["path"].encode()})
        return
    seen.append(scope)
    await receive()  # websocket.connect
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-body":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})
        return
    if path == "/flood":  # send until the client's window holds us back
        await send({"type": "websocket.accept"})
        for index in range(64):
            await send({"type": "websocket.send", "bytes": bytes(64 * 1024)})
            seen.append(index)
        await send({"type": "websocket.close"})
        return
    protocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    if path == "/slow":  # read nothing for a while
        await asyncio.sleep(1.0)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen.append(message)
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4001, "reason": "as asked"})
            return
        await send({"type": "websocket.send", "text": message["text"], "bytes": message["bytes"]})


class Socket:
    """One WebSocket over one stream of an ``H2Peer``."""

    def __init__(self, peer: H2Peer, path: str = "/echo", extra: Any = ()) -> None:
        self.peer = peer
        fields = [(b":protocol", b"websocket"), (b"sec-websocket-version", b"13"), *extra]
        self.stream_id = peer.request(path, method="CONNECT", extra=fields, end_stream=False)
        self.log: StreamLog = peer.stream(self.stream_id)
        self.ws = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self.read = 0  # how much of the stream's data the protocol has seen

    def head(self) -> StreamLog:
        assert self.peer.pump(lambda: self.log.status is not None or self.log.done)
        return self.log

    def send(self, frame: Frame | str | bytes) -> None:
        if isinstance(frame, str):
            self.ws.send_text(frame.encode())
        elif isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send_frame(frame)
        self.peer.upload(self.stream_id, b"".join(self.ws.data_to_send()), end_stream=False)

    def frames(self, count: int = 1, timeout: float = 5.0) -> list[Frame]:
        """The next ``count`` frames (pings answered by the protocol are left out)."""
        got: list[Frame] = []

        def enough() -> bool:
            data = self.log.data
            if len(data) > self.read:
                self.ws.receive_data(bytes(data[self.read :]))
                self.read = len(data)
                got.extend(f for f in self.ws.events_received() if isinstance(f, Frame))
            return len(got) >= count or self.log.done

        self.peer.pump(enough, timeout)
        answer = b"".join(self.ws.data_to_send())
        if answer and not self.log.done:
            self.peer.conn.send_data(self.stream_id, answer)
            self.peer.flush()
        return got

    def message(self) -> bytes | str:
        (frame,) = self.frames()
        assert frame.opcode in (Opcode.TEXT, Opcode.BINARY), frame
        return frame.data.decode() if frame.opcode is Opcode.TEXT else frame.data

    def ended(self) -> StreamLog:
        assert self.peer.pump(lambda: self.log.done)
        return self.log


def test_the_setting_is_advertised_and_an_extended_connect_is_accepted_with_200() -> None:
    seen.clear()
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        assert peer.conn.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1
        sock = Socket(peer, "/echo?x=1", [(b"sec-websocket-protocol", b"chat, superchat")])
        log = sock.head()
        assert log.status == 200 and not log.done
        assert log.header(b"sec-websocket-protocol") == b"chat"
        assert log.header(b"sec-websocket-accept") is None  # RFC 8441 §5: no key, no accept
        scope = seen[0]
        assert (scope["type"], scope["http_version"], scope["scheme"]) == ("websocket", "2", "ws")
        assert (scope["path"], scope["query_string"]) == ("/echo", b"x=1")
        assert scope["subprotocols"] == ["chat", "superchat"]
        assert "method" not in scope and "websocket.http.response" in scope["extensions"]


def test_echo_text_bytes_and_a_message_larger_than_the_windows() -> None:
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer)
        assert sock.head().status == 200
        sock.send("héllo")
        assert sock.message() == "héllo"
        sock.send(b"\x00\x01")
        assert sock.message() == b"\x00\x01"
        big = bytes(range(256)) * 12288  # 3 MiB: more than the stream's 1 MiB window
        sock.send(big)
        (frame,) = sock.frames(timeout=10)
        assert frame.data == big


def test_the_clients_close_is_echoed_and_the_stream_ends_in_order() -> None:
    seen.clear()
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer)
        assert sock.head().status == 200
        sock.ws.send_close(4000, "bye")
        sock.peer.upload(sock.stream_id, b"".join(sock.ws.data_to_send()), end_stream=False)
        (frame,) = sock.frames()
        assert frame.opcode is Opcode.CLOSE and Close.parse(frame.data).code == 4000
        log = sock.ended()
        assert log.ended and log.reset is None  # END_STREAM, not RST_STREAM (RFC 8441 §5)
        assert settle(lambda: any(isinstance(m, dict) and m.get("code") == 4000 for m in seen))
        assert next(m for m in seen if isinstance(m, dict) and "code" in m)["reason"] == "bye"


def test_the_apps_close_reaches_the_client_then_the_stream_ends() -> None:
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer)
        sock.send("close please")
        (frame,) = sock.frames()
        close = Close.parse(frame.data)
        assert (close.code, close.reason) == (4001, "as asked")
        log = sock.ended()  # our echo of the close was sent by frames()
        assert log.ended and log.reset is None


def test_denials_are_ordinary_responses_on_the_stream() -> None:
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        denied = Socket(peer, "/deny").ended()
        assert denied.status == 403 and denied.ended
        with_body = Socket(peer, "/deny-body").ended()
        assert with_body.status == 401 and bytes(with_body.data) == b"who are you?"
        assert peer.get("/after").status == 200  # the connection goes on


def test_sockets_and_requests_interleave_on_one_connection() -> None:
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sockets = [Socket(peer, f"/ws{index}") for index in range(5)]
        for round_ in range(3):
            requests = [peer.request(f"/get{round_}-{index}") for index in range(3)]
            for index, sock in enumerate(sockets):
                sock.send(f"round {round_} socket {index}")
            for index, sock in enumerate(sockets):
                assert sock.message() == f"round {round_} socket {index}"
            for stream_id in requests:
                log = peer.wait(stream_id)
                assert log.status == 200 and bytes(log.data).startswith(b"plain /get")
        assert all(not sock.log.done for sock in sockets)


def test_a_bad_extended_connect_is_refused_on_its_stream() -> None:
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        stream_id = peer.request(
            "/echo",
            method="CONNECT",
            extra=[(b":protocol", b"websocket"), (b"sec-websocket-version", b"8")],
            end_stream=False,
        )
        log = peer.wait(stream_id)
        assert log.status == 426 and log.header(b"sec-websocket-version") == b"13"
        stream_id = peer.request(
            "/x", method="CONNECT", extra=[(b":protocol", b"connect-udp")], end_stream=False
        )
        assert peer.wait(stream_id).status == 501
        assert peer.get("/still").status == 200


def test_ws_none_does_not_advertise_and_an_extended_connect_is_malformed() -> None:
    with running(app, http2=True, ws="none") as server:
        with H2Peer(server.port) as peer:
            assert peer.conn.remote_settings.get(ENABLE_CONNECT_PROTOCOL, 0) == 0
        with RawPeer(server.port) as raw:
            raw.send(raw_headers(1, extended_connect("/echo")))
            assert raw.wait(1).reset == PROTOCOL_ERROR  # RFC 8441 §4: unknown pseudo-header


def extended_connect(path: str) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path.encode()),
        (b"sec-websocket-version", b"13"),
    ]


def raw_headers(stream_id: int, fields: list[tuple[bytes, bytes]]) -> bytes:
    return headers(stream_id, fields, end_stream=False)


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_protocol_violation_closes_with_its_code_and_the_connection_serves_on(
    name: str,
) -> None:
    frame, expected = VIOLATIONS[name]
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        bad = Socket(peer)
        assert bad.head().status == 200
        peer.upload(bad.stream_id, frame, end_stream=False)
        assert peer.pump(lambda: close_code(bytes(bad.log.data)) is not None or bad.log.done)
        assert close_code(bytes(bad.log.data)) == expected
        assert bad.ended().reset is None  # the close frame, then END_STREAM
        fine = Socket(peer)
        fine.send("still here")
        assert fine.message() == "still here"


def test_too_big_is_1009_and_a_bomb_is_stopped_while_it_inflates() -> None:
    with running(app, http2=True, ws_max_size=1024) as server, H2Peer(server.port) as peer:
        too_big = Socket(peer)
        too_big.send(bytes(2048))
        (frame,) = too_big.frames()
        assert Close.parse(frame.data).code == 1009
        deflate = [(b"sec-websocket-extensions", b"permessage-deflate")]
        bomb = Socket(peer, extra=deflate)
        assert bomb.head().header(b"sec-websocket-extensions") == b"permessage-deflate"
        squeezer = zlib.compressobj(wbits=-15)
        payload = squeezer.compress(bytes(10 << 20)) + squeezer.flush(zlib.Z_SYNC_FLUSH)
        assert len(payload) < 16 * 1024  # 10 MiB of zeros, squeezed small
        compressed = client_frame(BINARY, payload[:-4], rsv=4)  # RFC 7692 §7.2.1
        peer.upload(bomb.stream_id, compressed, end_stream=False)
        assert peer.pump(lambda: close_code(bytes(bomb.log.data)) is not None or bomb.log.done)
        assert close_code(bytes(bomb.log.data)) == 1009


def test_a_reset_from_the_client_is_a_1006_for_the_app() -> None:
    seen.clear()
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer)
        assert sock.head().status == 200
        peer.reset(sock.stream_id, CANCEL)
        assert settle(lambda: any(isinstance(m, dict) and m.get("code") == 1006 for m in seen))
        assert peer.get("/after").status == 200


def test_a_client_that_does_not_read_holds_the_apps_sends_back() -> None:
    seen.clear()
    with running(app, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer, "/flood")
        peer.hold.add(sock.stream_id)  # no WINDOW_UPDATE for this stream
        assert sock.head().status == 200
        time.sleep(0.5)
        peer.pump(timeout=0.2)
        sent = [m for m in seen if isinstance(m, int)]
        assert len(sent) < 32, sent  # 64 KiB window: the app waits instead of queueing 4 MiB
        peer.hold.clear()
        peer.open_window(sock.stream_id, 8 << 20)
        assert len(sock.frames(65, timeout=10)) == 65  # 64 messages and the close
        assert len([m for m in seen if isinstance(m, int)]) == 64


def test_a_slow_app_stops_crediting_the_clients_window() -> None:
    options = {"http2": True, "ws_max_queue": 4, "http2_stream_window": 65535}
    with running(app, **options) as server, H2Peer(server.port) as peer:
        sock = Socket(peer, "/slow")
        assert sock.head().status == 200
        conn, stream_id = peer.conn, sock.stream_id
        sent = 0
        deadline = time.monotonic() + 0.7  # the app reads nothing for 1 s
        while time.monotonic() < deadline and sent < 40:
            if conn.local_flow_control_window(stream_id) >= 16000 + 8:
                sock.ws.send_binary(bytes(16000))
                conn.send_data(stream_id, b"".join(sock.ws.data_to_send()))
                peer.flush()
                sent += 1
            else:
                peer.pump(timeout=0.05)
        # --ws-max-queue messages queued, then no more credit: one window more at most.
        assert 4 <= sent <= 10, sent
        for _ in range(40 - sent):
            sock.send(bytes(16000))  # waits for the window as the app catches up
        assert len(sock.frames(40, timeout=10)) == 40  # nothing was lost


def test_shutdown_closes_sockets_with_1001_then_ends_the_stream() -> None:
    # RawPeer: the h2 library treats a GOAWAY as the end and drops the close frame after it.
    with running(app, http2=True) as server, RawPeer(server.port) as raw:
        raw.send(raw_headers(1, extended_connect("/echo")))
        log = raw.stream(1)
        assert raw.pump(lambda: log.status is not None) and log.status == 200
        server.request_exit()
        assert raw.pump(lambda: close_code(bytes(log.data)) is not None or log.done)
        assert close_code(bytes(log.data)) == 1001
        raw.send(data(1, client_frame(CLOSE, struct.pack("!H", 1001))))
        assert raw.wait(1).ended and log.reset is None
        assert raw.goaway is not None


def test_a_fastapi_websocket_endpoint_over_http2() -> None:
    api = FastAPI()

    @api.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        name = await websocket.receive_text()
        await websocket.send_json(
            {"room": room, "hello": name, "over": websocket.scope["http_version"]}
        )
        await websocket.close(code=4100)

    with running(api, http2=True) as server, H2Peer(server.port) as peer:
        sock = Socket(peer, "/rooms/blue")
        assert sock.head().status == 200
        sock.send("ana")
        text, close = sock.frames(2)
        assert json.loads(text.data) == {"room": "blue", "hello": "ana", "over": "2"}
        assert Close.parse(close.data).code == 4100
        assert sock.ended().reset is None
