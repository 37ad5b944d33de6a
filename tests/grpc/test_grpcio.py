"""The gRPC battery driven by grpcio (Google's C-core client), against both Echo apps over h2c,
TLS (ALPN h2) and nginx ``grpc_pass`` (h2c and TLS upstreams)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from examples.grpc_echo import asgi_app, stubs
from tests.grpc import expect
from tests.grpc.conftest import DIRECT, PROXIED, Servers, Target, target_id
from tests.serving import running

pb = expect.pb
pb_grpc: Any = stubs.load("echo_pb2_grpc")
OPTIONS = [
    ("grpc.max_receive_message_length", expect.MAX_MESSAGE),
    ("grpc.max_send_message_length", expect.MAX_MESSAGE),
]


@pytest.fixture(params=DIRECT + PROXIED, ids=target_id)
def target(request: pytest.FixtureRequest, servers: Servers) -> Target:
    return servers.get(*request.param)


@pytest.fixture
def channel(target: Target) -> Iterator[grpc.Channel]:
    if target.ca is None:
        chan = grpc.insecure_channel(target.address, options=OPTIONS)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=target.ca_pem())
        chan = grpc.secure_channel(target.address, credentials, options=OPTIONS)
    with chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> Any:
    return pb_grpc.EchoStub(channel)


def status_of(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(*args, **kwargs)
    return failure.value


def test_unary(stub: Any) -> None:
    reply = stub.Unary(pb.EchoRequest(message="hello", payload=b"\x00\xff"), timeout=10)
    assert (reply.message, reply.payload) == ("hello", b"\x00\xff")


def test_server_stream_of_100(stub: Any) -> None:
    replies = list(stub.ServerStream(pb.EchoRequest(message="m", count=100), timeout=10))
    assert [r.index for r in replies] == list(range(100))


def test_client_stream_of_100(stub: Any) -> None:
    requests = (pb.EchoRequest(message=str(i % 10), payload=b"ab") for i in range(100))
    reply = stub.ClientStream(requests, timeout=10)
    assert reply.message == "0123456789" * 10 and reply.index == 200


def test_bidi_100_round_trips(stub: Any) -> None:
    """Each request is sent only after the previous answer arrived: a true round trip."""
    outbox: queue.Queue[Any] = queue.Queue()
    replies = stub.Bidi(iter(outbox.get, None), timeout=20)
    for i in range(100):
        outbox.put(pb.EchoRequest(message=f"ping {i}"))
        reply = next(replies)
        assert (reply.message, reply.index) == (f"ping {i}", i)
    outbox.put(None)
    assert list(replies) == []


def test_bidi_with_1_mib_messages_both_ways(stub: Any) -> None:
    """Big messages in both directions at once: each side's window is credited as the other
    consumes, so neither stalls."""
    chunk = expect.big_payload()[: 1 << 20]
    outbox: queue.Queue[Any] = queue.Queue()
    replies = stub.Bidi(iter(outbox.get, None), timeout=30)
    for i in range(expect.BIG_ROUND_TRIPS):
        outbox.put(pb.EchoRequest(message=str(i), payload=chunk))
        reply = next(replies)
        assert (reply.message, reply.payload) == (str(i), chunk)
    outbox.put(None)
    assert list(replies) == []


def test_client_stream_upload_of_32_mib(stub: Any) -> None:
    """Far more than every receive window: the upload goes on as the app reads."""
    chunk = b"u" * (1 << 20)
    requests = (pb.EchoRequest(payload=chunk) for _ in range(32))
    assert stub.ClientStream(requests, timeout=60).index == 32 << 20


def test_error_status_with_non_ascii_message(stub: Any) -> None:
    request = pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE)
    error = status_of(stub.Fail, request, timeout=10)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == expect.ERROR_MESSAGE


@pytest.mark.parametrize("code", [3, 5, 8, 14, 16])
def test_error_statuses_are_read_as_themselves(stub: Any, code: int) -> None:
    """Trailers-Only from the hand-written app, head + trailers from connectrpc (test_wire)."""
    error = status_of(stub.Fail, pb.FailRequest(code=code), timeout=10)
    assert error.code().value[0] == code  # not UNKNOWN (2)


def test_a_compression_the_app_lacks_is_unimplemented(stub: Any) -> None:
    """Neither app inflates deflate; each refuses the call with a status, never a hang."""
    request = pb.EchoRequest(message="squeeze me " * 100)
    error = status_of(stub.Unary, request, compression=grpc.Compression.Deflate, timeout=10)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_4_mib_request_and_response(stub: Any) -> None:
    payload = expect.big_payload()
    reply = stub.Unary(pb.EchoRequest(payload=payload), timeout=30)
    assert reply.payload == payload


def test_deadline_exceeded_reaches_the_handler(stub: Any) -> None:
    call_id = expect.call_id()
    started = time.monotonic()
    error = status_of(stub.Slow, pb.SlowRequest(seconds=10, call_id=call_id), timeout=1)
    gave_up = time.monotonic()
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 < gave_up - started < 2.0
    expect.assert_cancelled_promptly(call_id, gave_up)


def test_client_cancel_reaches_the_handler(stub: Any) -> None:
    call_id = expect.call_id()
    future = stub.Slow.future(pb.SlowRequest(seconds=10, call_id=call_id), timeout=30)
    expect.wait_until_running(call_id)
    assert future.cancel()
    cancelled = time.monotonic()
    assert future.cancelled()
    expect.assert_cancelled_promptly(call_id, cancelled)


def test_200_concurrent_unary_calls_on_one_channel(stub: Any) -> None:
    futures = [
        stub.Unary.future(pb.EchoRequest(message=str(i)), timeout=30)
        for i in range(expect.CONCURRENT)
    ]
    assert [f.result().message for f in futures] == [str(i) for i in range(expect.CONCURRENT)]


def test_2500_sequential_unary_calls_on_one_channel(stub: Any) -> None:
    for i in range(expect.SEQUENTIAL):
        assert stub.Unary(pb.EchoRequest(message=str(i)), timeout=10).message == str(i)


def test_a_slow_reader_does_not_delay_another_call(stub: Any) -> None:
    """A server stream the client stops reading (its windows fill up) leaves the other
    streams of the connection free: a unary call beside it still answers at once."""
    chunk = b"s" * 65536
    stalled = stub.ServerStream(pb.EchoRequest(payload=chunk, count=400), timeout=60)
    assert next(stalled).payload == chunk  # the stream is up; now stop reading it
    time.sleep(0.3)  # let the server fill every window it can
    started = time.monotonic()
    assert stub.Unary(pb.EchoRequest(message="beside"), timeout=5).message == "beside"
    assert time.monotonic() - started < 1.0
    stalled.cancel()


def test_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    method = channel.unary_unary("/caboose.echo.v1.Echo/NoSuchMethod")
    error = status_of(method, b"", timeout=10)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_metadata_echoed_as_initial_and_trailing(stub: Any) -> None:
    reply, call = stub.Unary.with_call(
        pb.EchoRequest(message="m"), metadata=expect.METADATA, timeout=10
    )
    assert reply.message == "m"
    assert expect.echoed(call.initial_metadata()) == list(expect.METADATA)
    assert expect.echoed(call.trailing_metadata()) == list(expect.METADATA)


def test_streams_of_many_threads_share_one_channel(stub: Any) -> None:
    """grpcio's channel is thread-safe; calls from eight threads interleave on one
    connection while server streams run beside them."""

    def worker(n: int) -> int:
        total = sum(
            len(r.payload)
            for r in stub.ServerStream(pb.EchoRequest(payload=b"x" * 1000, count=20), timeout=20)
        )
        return total + stub.Unary(pb.EchoRequest(message=str(n)), timeout=20).index

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(32))) == [20_000] * 32


def test_a_channel_outlives_idle_goaways() -> None:
    """caboose closes an idle HTTP/2 connection after --timeout-keep-alive with GOAWAY
    NO_ERROR; calls spaced around that moment all succeed on a reconnected channel."""
    with (
        running(asgi_app.app, timeout_keep_alive=0.3) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan,
    ):
        stub = pb_grpc.EchoStub(chan)
        for pause in expect.IDLE_PAUSES:
            assert stub.Unary(pb.EchoRequest(message="idle"), timeout=5).message == "idle"
            time.sleep(pause)


def test_a_call_in_flight_finishes_through_graceful_shutdown() -> None:
    """Shutdown sends GOAWAY at once but lets the call that is running finish."""
    with running(asgi_app.app) as server:
        chan = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        call_id = expect.call_id()
        future = pb_grpc.EchoStub(chan).Slow.future(
            pb.SlowRequest(seconds=0.5, call_id=call_id), timeout=10
        )
        expect.wait_until_running(call_id)
        server.request_exit()
        assert future.result().message == "slept 0.5s"
        chan.close()
    assert expect.service.SLOW_CALLS[call_id].outcome == "finished"


def test_a_call_over_the_concurrency_limit_is_unavailable() -> None:
    """--limit-concurrency answers 503, which gRPC clients read as UNAVAILABLE (retryable)."""
    with (
        running(asgi_app.app, limit_concurrency=1) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan,
    ):
        stub = pb_grpc.EchoStub(chan)
        call_id = expect.call_id()
        busy = stub.Slow.future(pb.SlowRequest(seconds=0.5, call_id=call_id), timeout=10)
        expect.wait_until_running(call_id)
        error = status_of(stub.Unary, pb.EchoRequest(message="over"), timeout=10)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert busy.result().message == "slept 0.5s"
