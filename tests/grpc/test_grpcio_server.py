"""The grpcio-server twin of the Echo app (the benchmark's reference point) answers like the
ASGI apps do, so that the benchmark compares the same work."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from examples.grpc_echo import stubs
from tests.grpc import expect
from tests.ports import free_port
from tests.serving import ROOT

pb = expect.pb
pb_grpc: Any = stubs.load("echo_pb2_grpc")


@pytest.fixture(scope="module")
def stub() -> Iterator[Any]:
    port = free_port()
    command = [sys.executable, "-m", "examples.grpc_echo.grpcio_server", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            grpc.channel_ready_future(chan).result(timeout=20)
            yield pb_grpc.EchoStub(chan)
    finally:
        process.terminate()
        process.wait(10)


def test_unary_with_metadata(stub: Any) -> None:
    reply, call = stub.Unary.with_call(
        pb.EchoRequest(message="ref"), metadata=expect.METADATA, timeout=10
    )
    assert reply.message == "ref"
    assert expect.echoed(call.trailing_metadata()) == list(expect.METADATA)


def test_server_stream_and_failure(stub: Any) -> None:
    replies = list(stub.ServerStream(pb.EchoRequest(count=100), timeout=10))
    assert [r.index for r in replies] == list(range(100))
    with pytest.raises(grpc.RpcError) as failure:
        stub.Fail(pb.FailRequest(code=expect.PERMISSION_DENIED, message=expect.ERROR_MESSAGE))
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert failure.value.details() == expect.ERROR_MESSAGE
    started = time.monotonic()
    with pytest.raises(grpc.RpcError):
        stub.Slow(pb.SlowRequest(seconds=5, call_id=expect.call_id()), timeout=0.5)
    assert time.monotonic() - started < 2
