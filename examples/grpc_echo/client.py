"""Call every method of the Echo service with grpcio and print what comes back.

    python -m examples.grpc_echo.client [--target 127.0.0.1:50051] [--ca ca.pem]

With ``--ca`` it dials TLS (ALPN h2) and trusts that CA; without, h2c by prior knowledge.
"""

from __future__ import annotations

import argparse
import queue
from typing import Any

import grpc

from examples.grpc_echo import stubs

pb: Any = stubs.load("echo_pb2")
pb_grpc: Any = stubs.load("echo_pb2_grpc")


def channel(target: str, ca: str | None) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(target)
    with open(ca, "rb") as file:
        credentials = grpc.ssl_channel_credentials(root_certificates=file.read())
    return grpc.secure_channel(target, credentials)


def tour(stub: Any) -> None:
    reply, call = stub.Unary.with_call(
        pb.EchoRequest(message="hello"), metadata=[("x-echo-who", "caboose")], timeout=5
    )
    print(f"Unary:        {reply.message!r}, trailing metadata {dict(call.trailing_metadata())}")

    replies = list(stub.ServerStream(pb.EchoRequest(message="tick", count=3), timeout=5))
    print(f"ServerStream: {[(r.message, r.index) for r in replies]}")

    requests = (pb.EchoRequest(message=word) for word in ("client ", "stream"))
    print(f"ClientStream: {stub.ClientStream(requests, timeout=5).message!r}")

    outbox: queue.Queue[Any] = queue.Queue()
    answers = stub.Bidi(iter(outbox.get, None), timeout=5)
    for word in ("ping", "pong"):
        outbox.put(pb.EchoRequest(message=word))
        print(f"Bidi:         sent {word!r}, got {next(answers).message!r}")
    outbox.put(None)

    try:
        stub.Fail(pb.FailRequest(code=7, message="café: 100% refusé"), timeout=5)
    except grpc.RpcError as error:
        print(f"Fail:         {error.code().name} {error.details()!r}")

    try:
        stub.Slow(pb.SlowRequest(seconds=5, call_id="tour"), timeout=0.5)
    except grpc.RpcError as error:
        print(f"Slow:         {error.code().name} after 0.5 s (the handler was cancelled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--ca", help="CA certificate (PEM) to dial TLS with")
    options = parser.parse_args()
    with channel(options.target, options.ca) as chan:
        tour(pb_grpc.EchoStub(chan))


if __name__ == "__main__":
    main()
