"""What the gRPC battery sends and expects, shared by the grpcio and grpclib test modules."""

from __future__ import annotations

import time
import uuid

from examples.grpc_echo import service

pb = service.pb

# A status message with non-ASCII text and a literal '%', which must be percent-encoded on the
# wire (grpc-message) and arrive intact.
ERROR_MESSAGE = "café: 100% sûr — ☕ / 東京"
PERMISSION_DENIED = 7
BIG = 4 << 20  # 4 MiB messages both ways
BIG_ROUND_TRIPS = 8  # bidi round trips of 1 MiB each way
MAX_MESSAGE = 16 << 20  # what the clients accept (grpcio's default is 4 MiB)
# Custom metadata the Echo apps echo back as initial and as trailing metadata.
METADATA = (("x-echo-plain", "caboose"), ("x-echo-blob-bin", b"\x00\x01\xfe\xff"))
# Sequential calls on one channel: past the 1,024 closed streams a connection remembers (twice
# over, so that memory is evicting all along) and nginx's default of 1,000 requests a
# connection. (5,000 proved no more and cost a minute of the suite's CPU.)
SEQUENTIAL = 2500
CONCURRENT = 200
# Pauses between calls around a 0.3 s idle timeout: before, at and after the server's GOAWAY.
IDLE_PAUSES = (0.25, 0.29, 0.31, 0.35, 0.5, 0.28, 0.3, 0.32, 0.0)
# A cancellation reaches the handler "promptly": this long after the client gave up at most.
PROMPT = 0.5


def big_payload() -> bytes:
    return bytes(range(256)) * (BIG // 256)


def call_id() -> str:
    return uuid.uuid4().hex


def wait_until_running(call_id: str) -> None:
    deadline = time.monotonic() + 5
    while call_id not in service.SLOW_CALLS:
        assert time.monotonic() < deadline, "the Slow call never reached its handler"
        time.sleep(0.01)


def assert_cancelled_promptly(call_id: str, since: float) -> None:
    """The Slow handler of ``call_id`` saw its cancellation within PROMPT of ``since``."""
    deadline = time.monotonic() + 5
    record = service.SLOW_CALLS.get(call_id)
    while (record is None or record.ended is None) and time.monotonic() < deadline:
        time.sleep(0.01)
        record = service.SLOW_CALLS.get(call_id)
    assert record is not None, "the Slow handler never ran"
    assert record.outcome == "cancelled", record
    assert record.ended is not None and record.ended - since < PROMPT, record.ended - since


def echoed(metadata: object) -> list[tuple[str, object]]:
    """The ``x-echo-*`` items of a metadata collection of (key, value) pairs."""
    return [(k, v) for k, v in metadata if k.startswith(service.ECHO_PREFIX)]  # type: ignore[attr-defined]
