"""WebSocket over HTTP/1.1 against a real server, with the ``websockets`` client library and
raw sockets for what a well-behaved client never sends."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import time
from typing import Any

import pytest
import websockets
from fastapi import FastAPI, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode

from tests.h2peer import settle
from tests.serving import read_all, running
from tests.wsframes import VIOLATIONS, close_code

seen: list[Any] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    await receive()  # websocket.connect
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/deny-body":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})
        return
    if path == "/flood":  # send until the client's socket holds us back
        await send({"type": "websocket.accept"})
        for index in range(256):
            await send({"type": "websocket.send", "bytes": bytes(64 * 1024)})
            seen.append(index)
        await send({"type": "websocket.close"})
        return
    protocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen.append(message)
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4001, "reason": "as asked"})
            return
        await send({"type": "websocket.send", "text": message["text"], "bytes": message["bytes"]})


def uri(port: int, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{port}{path}"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_echo_text_bytes_fragments_large_and_the_subprotocol() -> None:
    async def client(port: int) -> None:
        async with websockets.connect(uri(port), subprotocols=["chat"], max_size=2**21) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big

    with running(app) as server:
        run(client(server.port))


def test_the_apps_close_and_the_clients_close_reach_each_other() -> None:
    async def client(port: int) -> tuple[int, str]:
        async with websockets.connect(uri(port)) as ws:
            await ws.send("close please")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, closed.value.rcvd.reason

    async def leaving(port: int) -> None:
        async with websockets.connect(uri(port)) as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(4002, "bye")

    seen.clear()
    with running(app) as server:
        assert run(client(server.port)) == (4001, "as asked")
        run(leaving(server.port))
        assert settle(lambda: bool(seen))
    assert seen == [{"type": "websocket.disconnect", "code": 4002, "reason": "bye"}]


def test_a_close_before_the_accept_is_a_403_and_the_extension_denies_with_a_body() -> None:
    async def client(port: int, path: str) -> Any:
        with pytest.raises(websockets.InvalidStatus) as denied:
            async with websockets.connect(uri(port, path)):
                pass
        return denied.value.response

    with running(app) as server:
        assert run(client(server.port, "/deny")).status_code == 403
        response = run(client(server.port, "/deny-body"))
        assert (response.status_code, response.body) == (401, b"who are you?")


def handshake(key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==", version: bytes = b"13") -> bytes:
    return (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version + b"\r\n\r\n"
    )


def raw(port: int, data: bytes, *, until: bytes = b"\r\n\r\n") -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    got = b""
    while until not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return sock, got


def test_a_bad_handshake_gets_400_and_a_wrong_version_426() -> None:
    with running(app) as server:
        sock, reply = raw(server.port, handshake(key=b"short"))
        sock.close()
        assert reply.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Key" in reply
        sock, reply = raw(server.port, handshake(version=b"8"))
        sock.close()
        assert reply.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13" in reply


def close_code_for(port: int, frame: Frame) -> int:
    """Handshake by hand, send ``frame`` (masked, as a client must), read the server's close."""
    sock, reply = raw(port, handshake())
    with sock:
        assert reply.startswith(b"HTTP/1.1 101 ")
        sock.sendall(frame.serialize(mask=True))
        data = reply.split(b"\r\n\r\n", 1)[1]
        while len(data) < 4:
            chunk = sock.recv(65536)
            assert chunk, "closed without a close frame"
            data += chunk
    assert data[0] == 0x88, data  # FIN + CLOSE
    return int(struct.unpack("!H", data[2:4])[0])


def test_invalid_utf8_closes_with_1007_and_too_big_with_1009() -> None:
    with running(app, ws_max_size=1000) as server:
        assert close_code_for(server.port, Frame(Opcode.TEXT, b"ok \xff\xfe")) == 1007
        assert close_code_for(server.port, Frame(Opcode.BINARY, b"x" * 2000)) == 1009


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_protocol_violation_closes_with_its_code_and_others_are_served(name: str) -> None:
    frame, expected = VIOLATIONS[name]
    with running(app) as server:
        sock, reply = raw(server.port, handshake())
        with sock:
            assert reply.startswith(b"HTTP/1.1 101 ")
            sock.sendall(frame)
            data = reply.split(b"\r\n\r\n", 1)[1] + read_all(sock)  # the server closes
        assert close_code(data) == expected, data
        run(_echo_once(server.port))


async def _echo_once(port: int) -> None:
    async with websockets.connect(uri(port)) as ws:
        await ws.send("still here")
        assert await ws.recv() == "still here"


def test_ws_none_serves_the_upgrade_as_plain_http() -> None:
    with running(app, ws="none") as server:
        sock, reply = raw(server.port, handshake(), until=b"plain http")
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"plain http")


def test_a_lost_connection_is_a_1006_disconnect() -> None:
    seen.clear()
    with running(app) as server:
        sock, reply = raw(server.port, handshake())
        assert reply.startswith(b"HTTP/1.1 101 ")
        sock.close()
        assert settle(lambda: bool(seen))
    assert seen[0]["code"] == 1006


def test_shutdown_closes_open_sockets_with_1001() -> None:
    async def client(port: int, stop: Any) -> int:
        async with websockets.connect(uri(port)) as ws:
            await ws.send("x")
            await ws.recv()
            stop()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    with running(app) as server:
        assert run(client(server.port, server.request_exit)) == 1001


async def starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text.upper())


def test_a_starlette_websocket_endpoint() -> None:
    starlette_app = Starlette(routes=[WebSocketRoute("/shout", starlette_echo)])

    async def client(port: int) -> str:
        async with websockets.connect(uri(port, "/shout")) as ws:
            await ws.send("quiet")
            return str(await ws.recv())

    with running(starlette_app) as server:
        assert run(client(server.port)) == "QUIET"


def test_a_fastapi_websocket_endpoint() -> None:
    api = FastAPI()
    closes: list[int] = []

    @api.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept(subprotocol="chat")
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"room": room, "said": text})
        except WebSocketDisconnect as disconnect:
            closes.append(disconnect.code)

    async def client(port: int) -> list[str]:
        async with websockets.connect(uri(port, "/rooms/red"), subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            await ws.send("one")
            first = str(await ws.recv())
            await ws.send("two")
            return [first, str(await ws.recv()), str(ws.subprotocol)]

    with running(api) as server:
        got = run(client(server.port))
        assert got == ['{"room":"red","said":"one"}', '{"room":"red","said":"two"}', "chat"]
        assert settle(lambda: closes == [1000])


def test_a_client_key_is_answered_with_its_accept_token() -> None:
    key = base64.b64encode(os.urandom(16))
    with running(app) as server:
        sock, reply = raw(server.port, handshake(key=key))
        sock.close()
    from websockets.utils import accept_key

    assert f"sec-websocket-accept: {accept_key(key.decode())}".encode() in reply


def test_permessage_deflate_is_negotiated_and_used() -> None:
    async def client(port: int) -> list[Any]:
        async with websockets.connect(uri(port), compression="deflate") as ws:
            text = "compressible " * 50_000
            await ws.send(text)
            assert await ws.recv() == text
            return list(ws.protocol.extensions)

    with running(app) as server:
        extensions = run(client(server.port))
    assert [type(e).__name__ for e in extensions] == ["PerMessageDeflate"]


def test_deflate_can_be_turned_off() -> None:
    async def client(port: int) -> list[Any]:
        async with websockets.connect(uri(port), compression="deflate") as ws:
            return list(ws.protocol.extensions)

    with running(app, ws_per_message_deflate=False) as server:
        assert run(client(server.port)) == []


def test_a_compressed_bomb_is_stopped_while_it_inflates() -> None:
    """100 KB of zeros compress to about 100 bytes; the server inflates no more than
    --ws-max-size of it and closes with 1009."""

    async def client(port: int) -> int:
        async with websockets.connect(uri(port), compression="deflate", max_size=None) as ws:
            await ws.send(b"\x00" * 100_000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    with running(app, ws_max_size=10_000) as server:
        assert run(client(server.port)) == 1009


def test_keep_alive_pings_keep_a_live_client_and_drop_a_silent_one() -> None:
    async def live(port: int) -> None:
        async with websockets.connect(uri(port)) as ws:  # it answers pings by itself
            await asyncio.sleep(1.0)
            await ws.send("still here")
            assert await ws.recv() == "still here"

    with running(app, ws_ping_interval=0.2, ws_ping_timeout=0.3) as server:
        run(live(server.port))
        sock, reply = raw(server.port, handshake())  # never reads, never answers a ping
        with sock:
            assert reply.startswith(b"HTTP/1.1 101 ")
            data = reply.split(b"\r\n\r\n", 1)[1]
            sock.settimeout(5)
            while chunk := sock.recv(65536):
                data += chunk
        assert data[0] == 0x89  # the ping came first (FIN + PING)
        close = data[data.index(b"\x88") :]
        assert struct.unpack("!H", close[2:4])[0] == 1011


def test_a_slow_app_makes_the_server_stop_reading() -> None:
    """--ws-max-queue messages wait for the app; beyond them the server reads no more, so the
    client's sends back up instead of the server's memory."""
    received: list[int] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(len(message["bytes"]))
            if len(received) == 1:
                await asyncio.sleep(1.5)  # the app falls behind once

    async def client(port: int) -> float:
        async with websockets.connect(uri(port), compression=None, write_limit=1) as ws:
            started = asyncio.get_running_loop().time()
            for _ in range(400):
                await ws.send(b"x" * 65536)  # 25 MiB in all: more than socket buffers hold
            return asyncio.get_running_loop().time() - started

    with running(slow, ws_max_queue=4) as server:
        elapsed = run(client(server.port))
        assert settle(lambda: len(received) == 400, 10)
    assert elapsed >= 1.0, "the client was never held back"


def test_wss_over_tls_with_the_scheme_in_the_scope(tmp_path: Any) -> None:
    import ssl

    from tests.tls import issue_certificate

    files = issue_certificate(tmp_path)
    schemes: list[str] = []

    async def tls_app(scope: Any, receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await app(scope, receive, send)

    async def client(port: int) -> str:
        context = ssl.create_default_context(cafile=str(files.ca))
        async with websockets.connect(f"wss://127.0.0.1:{port}/echo", ssl=context) as ws:
            await ws.send("secret")
            return str(await ws.recv())

    with running(tls_app, **files.server_options()) as server:
        assert run(client(server.port)) == "secret"
    assert schemes == ["wss"]


def test_each_socket_is_logged_once_with_how_it_ended(caplog: Any) -> None:
    import logging

    async def client(port: int) -> None:
        async with websockets.connect(uri(port, "/logged")) as ws:
            await ws.send("x")
            await ws.recv()
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(uri(port, "/deny")):
                pass

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "caboose.access"]

    with (
        caplog.at_level(logging.INFO, logger="caboose.access"),
        running(app, access_log=True) as server,
    ):
        run(client(server.port))
        assert settle(lambda: sum("/deny" in line for line in lines()) == 1)
        assert settle(lambda: any("/logged" in line for line in lines()))
    logged = [line.split(" - ", 1)[1] for line in lines()]
    sockets = [line for line in logged if "/logged" in line]
    assert len(sockets) == 1, logged
    # The frames it wrote after the 101 (the echo and the close), and how long it was open.
    found = re.fullmatch(r'"WEBSOCKET /logged HTTP/1.1" 101 (\d+)B \d+\.\d\dms closed', sockets[0])
    assert found and int(found.group(1)) >= 4, sockets
    assert any(re.fullmatch(r'"WEBSOCKET /deny HTTP/1.1" 403 0B \S+ denied', x) for x in logged)


def test_a_client_that_does_not_read_holds_the_apps_sends_back() -> None:
    seen.clear()
    with running(app) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(5)
        with sock:
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(handshake().replace(b"/echo", b"/flood"))
            time.sleep(1.0)  # read nothing
            stalled = len([m for m in seen if isinstance(m, int)])
            # 16 MiB would be sent without backpressure; the kernel buffers and the
            # transport's high-water mark hold a few MiB at most.
            assert stalled < 160, stalled
            # Now read it all: nothing was lost, and the close comes after the 256th frame.
            # (Up to the close, not to EOF, which comes only when the server gives up waiting
            # for our close reply, 5 s later.)
            frames = 256 * (10 + 64 * 1024)  # each a 10-byte head (64-bit length) and 64 KiB
            data = bytearray()
            while (end := data.find(b"\r\n\r\n")) < 0 or len(data) < end + 4 + frames + 4:
                chunk = sock.recv(1 << 20)
                assert chunk, len(data)
                data += chunk
            body = bytes(data[end + 4 :])
        assert body[: 10 + 64 * 1024] == bytes([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]) + bytes(65536)
        assert close_code(body[frames:]) == 1000 and len(body) == frames + 4
        assert len([m for m in seen if isinstance(m, int)]) == 256
