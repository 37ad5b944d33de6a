"""WSStream against a recording sink: the ASGI websocket state machine (spec 2.4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from caboose.asgi.websocket import WSState, WSStream
from caboose.core.events import Headers
from caboose.errors import ClientDisconnected


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gate: asyncio.Future[None] | None = None

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        self.calls.append(("accept", subprotocol, headers))

    def deny(self, status: int, headers: Headers) -> None:
        self.calls.append(("deny", status))

    def deny_body(self, body: bytes, *, more: bool) -> None:
        self.calls.append(("deny_body", body, more))

    def send_message(self, data: bytes | str) -> None:
        self.calls.append(("message", data))

    def close(self, code: int, reason: str) -> None:
        self.calls.append(("close", code, reason))

    def abort(self) -> None:
        self.calls.append(("abort",))

    async def writable(self) -> None:
        if self.gate is not None:
            await self.gate

    def taken(self) -> None:
        self.calls.append(("taken",))


def make() -> tuple[WSStream, RecordingSink]:
    sink = RecordingSink()
    return WSStream(sink, {"type": "websocket", "subprotocols": ["chat"]}), sink


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_connect_accept_echo_and_the_peers_close() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x", b"1")]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.append(message)
                return
            await send(
                {"type": "websocket.send", "text": message["text"], "bytes": message["bytes"]}
            )

    seen: list[Any] = []

    async def scenario() -> RecordingSink:
        stream, sink = make()
        running = asyncio.ensure_future(stream.run(app))
        await asyncio.sleep(0)  # connected, accepted, waiting
        stream.feed_message("hi")
        await asyncio.sleep(0)
        stream.feed_message(b"\x00\x01")
        await asyncio.sleep(0)
        stream.closed(1001, "going away")
        await running
        return sink

    sink = run(scenario())
    assert sink.calls == [
        ("accept", "chat", [(b"x", b"1")]),
        ("taken",),
        ("message", "hi"),
        ("taken",),
        ("message", b"\x00\x01"),
    ]
    assert seen == [{"type": "websocket.disconnect", "code": 1001, "reason": "going away"}]


def test_a_close_before_the_accept_is_a_403() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    stream, sink = make()
    run(stream.run(app))
    assert sink.calls == [("deny", 403), ("deny_body", b"", False)]
    assert stream.status == 403


def test_the_http_response_extension_denies_with_a_streamed_body() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    stream, sink = make()
    run(stream.run(app))
    assert sink.calls == [
        ("deny", 401),
        ("deny_body", b"no ", True),
        ("deny_body", b"entry", False),
    ]


def test_a_peer_gone_before_the_accept_makes_the_accept_raise() -> None:
    async def scenario() -> None:
        stream, _ = make()
        await stream.receive()
        stream.closed()
        with pytest.raises(ClientDisconnected):
            await stream.send({"type": "websocket.accept"})

    run(scenario())


def test_send_after_the_peer_left_raises_an_oserror() -> None:
    async def scenario() -> None:
        stream, _ = make()
        await stream.receive()
        await stream.send({"type": "websocket.accept"})
        stream.closed()
        message = await stream.receive()
        assert message == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        with pytest.raises(ClientDisconnected) as caught:
            await stream.send({"type": "websocket.send", "text": "late"})
        assert isinstance(caught.value, OSError)

    run(scenario())


def test_an_app_error_after_the_accept_closes_with_1011_and_before_it_is_a_500() -> None:
    async def after(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise ValueError("boom")

    async def before(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    stream, sink = make()
    run(stream.run(after))
    assert sink.calls[-1] == ("close", 1011, "")
    stream, sink = make()
    run(stream.run(before))
    assert sink.calls[0] == ("deny", 500) and stream.status == 500


def test_returning_after_the_accept_closes_normally_and_without_it_is_a_500() -> None:
    async def accepted(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    stream, sink = make()
    run(stream.run(accepted))
    assert sink.calls[-1] == ("close", 1000, "")
    stream, sink = make()
    run(stream.run(silent))
    assert sink.calls[0] == ("deny", 500)


def test_the_apps_close_code_and_reason_reach_the_sink() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})

    stream, sink = make()
    run(stream.run(app))
    assert sink.calls[-1] == ("close", 4000, "bye") and stream.state is WSState.CLOSED


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "early"},  # before the accept
        {"type": "websocket.http.response.body", "body": b""},  # before its start
        {"type": "websocket.bogus"},
    ],
)
def test_misplaced_messages_are_runtime_errors(message: dict[str, Any]) -> None:
    async def scenario() -> None:
        stream, _ = make()
        await stream.receive()
        with pytest.raises(RuntimeError):
            await stream.send(message)

    run(scenario())


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1005, ""), (1006, ""), (1004, ""), (2999, ""), (5000, ""), (1000, "é" * 62)],
)
def test_a_close_code_or_reason_the_rfc_forbids_is_a_clear_error(code: int, reason: str) -> None:
    async def scenario() -> None:
        stream, sink = make()
        await stream.receive()
        await stream.send({"type": "websocket.accept"})
        with pytest.raises(RuntimeError, match="RFC 6455"):
            await stream.send({"type": "websocket.close", "code": code, "reason": reason})
        assert stream.state is WSState.CONNECTED and sink.calls[-1][0] == "accept"
        await stream.send({"type": "websocket.close", "code": 1012, "reason": "é" * 61})
        assert sink.calls[-1] == ("close", 1012, "é" * 61)

    run(scenario())


def test_a_message_needs_exactly_one_payload() -> None:
    async def scenario() -> None:
        stream, _ = make()
        await stream.receive()
        await stream.send({"type": "websocket.accept"})
        for bad in ({"text": "a", "bytes": b"b"}, {}):
            with pytest.raises(RuntimeError):
                await stream.send({"type": "websocket.send", **bad})

    run(scenario())


def test_send_waits_while_the_sink_says_wait() -> None:
    async def scenario() -> None:
        stream, sink = make()
        await stream.receive()
        await stream.send({"type": "websocket.accept"})
        sink.gate = asyncio.get_running_loop().create_future()
        sending = asyncio.ensure_future(stream.send({"type": "websocket.send", "bytes": b"x"}))
        await asyncio.sleep(0)
        assert not sending.done() and sink.calls[-1] == ("message", b"x")
        sink.gate.set_result(None)
        await sending

    run(scenario())


def test_messages_queued_before_the_peers_close_still_arrive() -> None:
    async def scenario() -> list[Any]:
        stream, _ = make()
        await stream.receive()
        await stream.send({"type": "websocket.accept"})
        stream.feed_message("one")
        stream.feed_message("two")
        stream.closed(1000, "")
        return [await stream.receive() for _ in range(3)]

    first, second, last = run(scenario())
    assert (first["text"], second["text"]) == ("one", "two")
    assert last == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
