"""HTTPStream against a recording sink: the ASGI http state machine, trailers included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from caboose.asgi.http import HTTPStream
from caboose.core.events import Headers
from caboose.errors import ClientDisconnected


class RecordingSink:
    """Records every write; ``gate``, while set and not done, makes writable() wait."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gate: asyncio.Future[None] | None = None
        self.waits = 0

    async def writable(self, stream_id: int) -> None:
        self.waits += 1
        if self.gate is not None:
            await self.gate

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        self.calls.append(("info", status))

    def send_head(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool, trailers: bool
    ) -> None:
        self.calls.append(("head", status, end_stream, trailers))

    def send_response(self, stream_id: int, status: int, headers: Headers, body: bytes) -> None:
        self.calls.append(("whole", status, body))

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.calls.append(("data", data, end_stream))

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        self.calls.append(("trailers", headers))

    def consumed(self, stream_id: int, size: int) -> None:
        self.calls.append(("consumed", size))

    def reset(self, stream_id: int) -> None:
        self.calls.append(("reset",))


def make_stream(
    *, method: str = "GET", te: bool = True, body_complete: bool = True, expect: bool = False
) -> tuple[HTTPStream, RecordingSink]:
    sink = RecordingSink()
    scope = {"type": "http", "method": method}
    stream = HTTPStream(
        sink, 1, scope, body_complete=body_complete, accepts_trailers=te, expect_continue=expect
    )
    return stream, sink


def run(coro: Any) -> Any:
    return asyncio.run(coro)


START = {"type": "http.response.start", "status": 200, "trailers": True}


def body(data: bytes = b"", more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def trailers(headers: list[tuple[bytes, bytes]], more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.trailers", "headers": headers, "more_trailers": more}


async def send_all(stream: HTTPStream, *messages: dict[str, Any]) -> None:
    for message in messages:
        await stream.send(message)
    await asyncio.sleep(0)  # let a scheduled end-of-message run


def test_trailers_hold_the_end_of_the_message() -> None:
    stream, sink = make_stream()
    run(send_all(stream, START, body(b"abc"), trailers([(b"x-sum", b"1")])))
    assert sink.calls == [
        ("head", 200, False, True),
        ("data", b"abc", False),
        ("trailers", [(b"x-sum", b"1")]),
    ]


def test_two_trailers_messages_both_reach_the_sink() -> None:
    stream, sink = make_stream()
    run(send_all(stream, START, body(b"a"), trailers([(b"x-a", b"1")], more=True)))
    run(send_all(stream, trailers([(b"x-b", b"2")])))
    assert sink.calls[-1] == ("trailers", [(b"x-a", b"1"), (b"x-b", b"2")])


def test_without_te_trailers_are_dropped_but_the_message_ends() -> None:
    stream, sink = make_stream(te=False)
    run(send_all(stream, START, body(b"abc"), trailers([(b"x-sum", b"1")])))
    assert sink.calls == [
        ("head", 200, False, False),
        ("data", b"abc", False),
        ("data", b"", True),
    ]


def test_head_never_gets_trailers() -> None:
    stream, sink = make_stream(method="HEAD")
    run(send_all(stream, START, body(b""), trailers([(b"x-sum", b"1")])))
    assert ("trailers", [(b"x-sum", b"1")]) not in sink.calls
    assert sink.calls[0] == ("head", 200, False, False)


def test_body_after_the_trailers_raises() -> None:
    stream, _ = make_stream()
    run(send_all(stream, START, body(b"a"), trailers([])))
    with pytest.raises(RuntimeError, match="after the response completed"):
        run(stream.send(body(b"late")))


def test_body_during_the_trailers_phase_raises() -> None:
    stream, _ = make_stream()
    run(send_all(stream, START, body(b"a"), trailers([(b"x-a", b"1")], more=True)))
    with pytest.raises(RuntimeError, match="trailers phase"):
        run(stream.send(body(b"late")))


def test_body_after_the_final_body_with_trailers_pending_raises() -> None:
    stream, _ = make_stream()
    run(send_all(stream, START, body(b"a")))
    with pytest.raises(RuntimeError, match="trailers phase"):
        run(stream.send(body(b"late")))


def test_trailers_without_opting_in_raise() -> None:
    stream, _ = make_stream()
    run(send_all(stream, {"type": "http.response.start", "status": 200}, body(b"a", more=True)))
    with pytest.raises(RuntimeError, match="trailers: True"):
        run(stream.send(trailers([])))


@pytest.mark.parametrize(
    "name", [b":status", b"content-length", b"Transfer-Encoding", b"host", b"te", b"trailer"]
)
def test_forbidden_trailer_fields_raise(name: bytes) -> None:
    stream, _ = make_stream()
    run(send_all(stream, START, body(b"a")))
    with pytest.raises(RuntimeError):
        run(stream.send(trailers([(name, b"1")])))


def test_trailers_with_no_body_message_flush_the_head() -> None:
    stream, sink = make_stream()
    run(send_all(stream, START, trailers([(b"grpc-status", b"0")])))
    assert sink.calls == [("head", 200, False, True), ("trailers", [(b"grpc-status", b"0")])]


def test_empty_final_body_puts_end_stream_on_the_head() -> None:
    stream, sink = make_stream()
    run(send_all(stream, {"type": "http.response.start", "status": 204}, body()))
    assert sink.calls == [("head", 204, True, False)]


def test_request_trailers_arrive_on_the_final_message() -> None:
    stream, sink = make_stream(body_complete=False)

    async def scenario() -> list[Any]:
        stream.feed_body(b"abc")
        first = await stream.receive()
        stream.feed_trailers([(b"x-sum", b"9")])
        stream.end_body()
        return [first, await stream.receive()]

    first, last = run(scenario())
    assert first == {"type": "http.request", "body": b"abc", "more_body": True}
    assert last == {
        "type": "http.request",
        "body": b"",
        "more_body": False,
        "trailers": [(b"x-sum", b"9")],
    }
    assert ("consumed", 3) in sink.calls


def test_expect_100_continue_is_sent_on_first_receive() -> None:
    stream, sink = make_stream(body_complete=False, expect=True)

    async def scenario() -> Any:
        task = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0)
        stream.feed_body(b"x")
        stream.end_body()
        return await task

    assert run(scenario())["body"] == b"x"
    assert sink.calls[0] == ("info", 100)


def test_disconnect_wakes_receive_and_makes_send_raise() -> None:
    """ASGI 2.4: send() after the client left raises an OSError subclass; nothing is sent."""
    stream, sink = make_stream(body_complete=False)

    async def scenario() -> Any:
        task = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0)
        stream.disconnect()
        message = await task
        with pytest.raises(ClientDisconnected) as raised:
            await stream.send({"type": "http.response.start", "status": 200})
        assert isinstance(raised.value, OSError)
        return message

    assert run(scenario()) == {"type": "http.disconnect"}
    assert sink.calls == []


def test_an_app_stopped_by_client_disconnected_is_not_an_error() -> None:
    stream, sink = make_stream()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        stream.disconnect()
        await send({"type": "http.response.start", "status": 200})

    run(stream.run(app))
    assert sink.calls == []  # no 500, no reset: the client is gone


def test_app_error_before_start_is_500() -> None:
    stream, sink = make_stream()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async def scenario() -> None:
        await stream.run(app)
        await asyncio.sleep(0)

    run(scenario())
    assert sink.calls[0][:2] == ("whole", 500)


def test_app_error_after_start_resets() -> None:
    stream, sink = make_stream()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send(body(b"partial", more=True))
        raise ValueError("boom")

    run(stream.run(app))
    assert sink.calls[-1] == ("reset",)


def test_single_final_body_is_one_whole_response() -> None:
    stream, sink = make_stream()
    run(send_all(stream, {"type": "http.response.start", "status": 200}, body(b"hello")))
    assert sink.calls == [("whole", 200, b"hello")]


def test_a_send_after_the_response_completed_is_a_runtime_error_even_once_disconnected() -> None:
    """The app's mistake stays a RuntimeError when the client left right after the response
    (a race the contract tests met): ClientDisconnected is for responses still in progress."""
    stream, _sink = make_stream()

    async def scenario() -> None:
        await stream.send({"type": "http.response.start", "status": 200})
        await stream.send(body(b"done"))
        stream.disconnect()
        with pytest.raises(RuntimeError, match="after the response completed"):
            await stream.send(body(b"late"))

    run(scenario())


# -- backpressure: the sink takes every write, and says when to wait ---------------------------


def test_a_streamed_body_waits_while_the_sink_says_wait() -> None:
    async def scenario() -> None:
        stream, sink = make_stream()
        sink.gate = asyncio.get_running_loop().create_future()
        await stream.send({"type": "http.response.start", "status": 200})
        sending = asyncio.ensure_future(stream.send(body(b"one", more=True)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sending.done(), "send() returned while the sink said wait"
        assert ("data", b"one", False) in sink.calls, "the write itself was not taken at once"
        sink.gate.set_result(None)
        await asyncio.wait_for(sending, 1)

    run(scenario())


def test_a_final_body_waits_too_and_the_response_is_finished_meanwhile() -> None:
    async def scenario() -> None:
        stream, sink = make_stream()
        sink.gate = asyncio.get_running_loop().create_future()
        await stream.send({"type": "http.response.start", "status": 200})
        sending = asyncio.ensure_future(stream.send(body(b"all")))
        await asyncio.sleep(0)
        assert stream.finished and sink.calls == [("whole", 200, b"all")]
        assert not sending.done()
        sink.gate.set_result(None)
        await asyncio.wait_for(sending, 1)

    run(scenario())


def test_a_sender_released_by_a_reset_then_gets_client_disconnected() -> None:
    async def scenario() -> None:
        stream, sink = make_stream()
        sink.gate = asyncio.get_running_loop().create_future()
        await stream.send({"type": "http.response.start", "status": 200})
        sending = asyncio.ensure_future(stream.send(body(b"x", more=True)))
        await asyncio.sleep(0)
        stream.disconnect()  # the protocol resets the stream and releases its writers
        sink.gate.set_result(None)
        await asyncio.wait_for(sending, 1)
        with pytest.raises(ClientDisconnected):
            await stream.send(body(b"y", more=True))

    run(scenario())


def test_a_500_is_handed_over_without_waiting_for_the_sink() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async def scenario() -> None:
        stream, sink = make_stream()
        sink.gate = asyncio.get_running_loop().create_future()  # never opens
        await asyncio.wait_for(stream.run(app), 1)
        assert sink.calls[-1][:2] == ("whole", 500)

    run(scenario())


def test_every_streamed_piece_asks_the_sink() -> None:
    async def scenario() -> None:
        stream, sink = make_stream()
        await stream.send({"type": "http.response.start", "status": 200})
        for _ in range(3):
            await stream.send(body(b"x", more=True))
        await stream.send(body(b""))
        assert sink.waits == 4

    run(scenario())
