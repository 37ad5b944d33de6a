"""The gRPC battery driven by grpclib (a pure-Python asyncio client on the ``h2`` library),
against both Echo apps over h2c, TLS (ALPN h2) and nginx ``grpc_pass``: a second client that
shares no code with grpcio, so a quirk of one cannot hide a defect."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from examples.grpc_echo import asgi_app, stubs
from tests.grpc import expect
from tests.grpc.conftest import DIRECT, PROXIED, Servers, Target, target_id
from tests.serving import running

pb = expect.pb
pb_grpclib: Any = stubs.load("echo_grpc")
T = TypeVar("T")
# grpclib's default windows are 4 MiB for the connection *and* for each stream, so one stream
# the client stops reading can take the whole connection window and stall every other stream:
# no server can send then (RFC 9113 §6.9.1). A connection window larger than a stream's, as
# grpcio keeps, leaves room for the others.
CONFIG = Configuration(http2_connection_window_size=16 << 20, http2_stream_window_size=1 << 20)


@pytest.fixture(params=DIRECT + PROXIED, ids=target_id)
def target(request: pytest.FixtureRequest, servers: Servers) -> Target:
    return servers.get(*request.param)


@contextlib.asynccontextmanager
async def echo_stub(target: Target) -> AsyncIterator[Any]:
    context: ssl.SSLContext | None = None
    if target.ca is not None:
        context = ssl.create_default_context(cafile=str(target.ca))
        context.set_alpn_protocols(["h2"])
    channel = Channel("127.0.0.1", target.port, ssl=context, config=CONFIG)
    try:
        yield pb_grpclib.EchoStub(channel)
    finally:
        channel.close()


def with_stub(target: Target, body: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        async with echo_stub(target) as stub:
            return await asyncio.wait_for(body(stub), 60)

    return asyncio.run(main())


async def status_of(call: Awaitable[Any]) -> GRPCError:
    with pytest.raises(GRPCError) as failure:
        await call
    return failure.value


def test_unary(target: Target) -> None:
    async def body(stub: Any) -> Any:
        return await stub.Unary(pb.EchoRequest(message="hello", payload=b"\x00\xff"), timeout=10)

    reply = with_stub(target, body)
    assert (reply.message, reply.payload) == ("hello", b"\x00\xff")


def test_server_stream_of_100(target: Target) -> None:
    async def body(stub: Any) -> list[Any]:
        return list(await stub.ServerStream(pb.EchoRequest(message="m", count=100), timeout=10))

    assert [r.index for r in with_stub(target, body)] == list(range(100))


def test_client_stream_of_100(target: Target) -> None:
    async def body(stub: Any) -> Any:
        async with stub.ClientStream.open(timeout=10) as stream:
            for i in range(100):
                await stream.send_message(pb.EchoRequest(message=str(i % 10), payload=b"ab"))
            await stream.end()
            return await stream.recv_message()

    reply = with_stub(target, body)
    assert reply.message == "0123456789" * 10 and reply.index == 200


def test_bidi_100_round_trips(target: Target) -> None:
    async def body(stub: Any) -> list[tuple[str, int]]:
        seen = []
        async with stub.Bidi.open(timeout=20) as stream:
            for i in range(100):
                await stream.send_message(pb.EchoRequest(message=f"ping {i}"))
                reply = await stream.recv_message()
                seen.append((reply.message, reply.index))
            await stream.end()
            assert await stream.recv_message() is None
        return seen

    assert with_stub(target, body) == [(f"ping {i}", i) for i in range(100)]


def test_bidi_with_1_mib_messages_both_ways(target: Target) -> None:
    chunk = expect.big_payload()[: 1 << 20]

    async def body(stub: Any) -> int:
        async with stub.Bidi.open(timeout=30) as stream:
            for i in range(expect.BIG_ROUND_TRIPS):
                await stream.send_message(pb.EchoRequest(message=str(i), payload=chunk))
                reply = await stream.recv_message()
                assert (reply.message, reply.payload) == (str(i), chunk)
            await stream.end()
            assert await stream.recv_message() is None
        return expect.BIG_ROUND_TRIPS

    assert with_stub(target, body) == expect.BIG_ROUND_TRIPS


def test_client_stream_upload_of_32_mib(target: Target) -> None:
    chunk = b"u" * (1 << 20)

    async def body(stub: Any) -> Any:
        async with stub.ClientStream.open(timeout=60) as stream:
            for _ in range(32):
                await stream.send_message(pb.EchoRequest(payload=chunk))
            await stream.end()
            return await stream.recv_message()

    assert with_stub(target, body).index == 32 << 20


def test_error_status_with_non_ascii_message(target: Target) -> None:
    async def body(stub: Any) -> GRPCError:
        request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
        return await status_of(stub.Fail(request, timeout=10))

    error = with_stub(target, body)
    assert (error.status, error.message) == (Status.PERMISSION_DENIED, expect.ERROR_MESSAGE)


@pytest.mark.parametrize("code", [3, 5, 8, 14, 16])
def test_error_statuses_are_read_as_themselves(target: Target, code: int) -> None:
    """Trailers-Only from the hand-written app, head + trailers from connectrpc (test_wire)."""

    async def body(stub: Any) -> GRPCError:
        return await status_of(stub.Fail(pb.FailRequest(code=code), timeout=10))

    assert with_stub(target, body).status == Status(code)  # not UNKNOWN (2)


def test_4_mib_request_and_response(target: Target) -> None:
    payload = expect.big_payload()

    async def body(stub: Any) -> Any:
        return await stub.Unary(pb.EchoRequest(payload=payload), timeout=30)

    assert with_stub(target, body).payload == payload


def test_deadline_exceeded_reaches_the_handler(target: Target) -> None:
    call_id = expect.call_id()

    async def body(stub: Any) -> tuple[float, float]:
        started = time.monotonic()
        # Both sides know the deadline: the server answers DEADLINE_EXCEEDED at it, and
        # grpclib's own timer raises TimeoutError when it fires first.
        with pytest.raises((GRPCError, asyncio.TimeoutError)) as failure:
            await stub.Slow(pb.SlowRequest(seconds=10, call_id=call_id), timeout=1)
        if isinstance(failure.value, GRPCError):
            assert failure.value.status == Status.DEADLINE_EXCEEDED
        return started, time.monotonic()

    started, gave_up = with_stub(target, body)
    assert 0.9 < gave_up - started < 2.0
    expect.assert_cancelled_promptly(call_id, gave_up)


def test_client_cancel_reaches_the_handler(target: Target) -> None:
    call_id = expect.call_id()

    async def body(stub: Any) -> float:
        call = asyncio.ensure_future(stub.Slow(pb.SlowRequest(seconds=10, call_id=call_id)))
        while call_id not in expect.service.SLOW_CALLS:
            await asyncio.sleep(0.01)
        call.cancel()  # grpclib resets the stream (RST_STREAM CANCEL)
        with contextlib.suppress(asyncio.CancelledError):
            await call
        return time.monotonic()

    expect.assert_cancelled_promptly(call_id, with_stub(target, body))


def test_200_concurrent_unary_calls_on_one_channel(target: Target) -> None:
    """200 calls against our 100-stream limit: grpclib queues them once it knows the limit.
    One call goes first so that it does: sent before our SETTINGS arrive, the calls above 100
    are refused with REFUSED_STREAM (RFC 9113 §5.1.2, as nghttp2 and Go do), which grpclib
    does not retry."""

    async def body(stub: Any) -> list[str]:
        await stub.Unary(pb.EchoRequest(message="first"), timeout=30)
        calls = [
            stub.Unary(pb.EchoRequest(message=str(i)), timeout=30) for i in range(expect.CONCURRENT)
        ]
        return [reply.message for reply in await asyncio.gather(*calls)]

    assert with_stub(target, body) == [str(i) for i in range(expect.CONCURRENT)]


def test_2500_sequential_unary_calls_on_one_channel(target: Target) -> None:
    async def body(stub: Any) -> None:
        for i in range(expect.SEQUENTIAL):
            reply = await stub.Unary(pb.EchoRequest(message=str(i)), timeout=10)
            assert reply.message == str(i)

    with_stub(target, body)


def test_a_slow_reader_does_not_delay_another_call(target: Target) -> None:
    chunk = b"s" * 65536

    async def body(stub: Any) -> float:
        async with stub.ServerStream.open(timeout=60) as stalled:
            await stalled.send_message(pb.EchoRequest(payload=chunk, count=400), end=True)
            assert (await stalled.recv_message()).payload == chunk
            await asyncio.sleep(0.3)  # the server fills every window it can
            started = time.monotonic()
            reply = await stub.Unary(pb.EchoRequest(message="beside"), timeout=5)
            elapsed = time.monotonic() - started
            assert reply.message == "beside"
            await stalled.cancel()
        return elapsed

    assert with_stub(target, body) < 1.0


def test_unknown_method_is_unimplemented(target: Target) -> None:
    async def body(stub: Any) -> GRPCError:
        method = type(stub.Unary)(
            stub.Unary.channel,
            "/caboose.echo.v1.Echo/NoSuchMethod",
            pb.EchoRequest,
            pb.EchoResponse,
        )
        return await status_of(method(pb.EchoRequest(), timeout=10))

    assert with_stub(target, body).status == Status.UNIMPLEMENTED


def test_metadata_echoed_as_initial_and_trailing(target: Target) -> None:
    async def body(stub: Any) -> tuple[Any, Any]:
        async with stub.Unary.open(metadata=list(expect.METADATA), timeout=10) as stream:
            await stream.send_message(pb.EchoRequest(message="m"), end=True)
            assert (await stream.recv_message()).message == "m"
            await stream.recv_trailing_metadata()
            return stream.initial_metadata, stream.trailing_metadata

    initial, trailing = with_stub(target, body)
    assert expect.echoed(initial.items()) == list(expect.METADATA)
    assert expect.echoed(trailing.items()) == list(expect.METADATA)


def test_a_channel_outlives_idle_goaways() -> None:
    """As for grpcio: calls spaced around the idle GOAWAY all succeed."""

    async def body(stub: Any) -> None:
        for pause in expect.IDLE_PAUSES:
            assert (await stub.Unary(pb.EchoRequest(message="idle"), timeout=5)).message == "idle"
            await asyncio.sleep(pause)

    with running(asgi_app.app, timeout_keep_alive=0.3) as server:
        with_stub(Target("asgi", "h2c", server.port), body)
