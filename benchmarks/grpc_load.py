"""gRPC load generator for bench.py's grpc-unary and grpc-stream scenarios: the real grpcio client.

    python benchmarks/grpc_load.py unary  URL --duration 5 --concurrency 50 --payload 16
    python benchmarks/grpc_load.py stream URL --duration 5 --concurrency 10 --count 1000
    python benchmarks/grpc_load.py probe  URL --timeout 2
    python benchmarks/grpc_load.py stubs
    python benchmarks/grpc_load.py request FILE stream --payload 100 --count 1000

URL is ``http://127.0.0.1:PORT/`` (the form bench.py hands wrk and h2load; only host and port are
used). Every mode talks to the Echo service of examples/grpc_echo (``caboose.echo.v1.Echo``) over
ONE grpcio channel, so one HTTP/2 cleartext connection with prior knowledge. Run it from the
project root, or anywhere: it puts the root on ``sys.path`` to import ``examples``. ``stubs``
generates the stubs (examples/grpc_echo/stubs.py) and exits, so that bench.py can do it once
before any server imports the app and no two processes run protoc into the same folder at once.
``request`` does that too and writes to FILE the request body (one length-prefixed message) that
``unary`` or ``stream`` with the same options sends, for h2load to send the very same call.

The load modes warm the connection with one call, then run for ``--duration`` seconds and print
ONE JSON line on stdout: ``rate`` (calls/s for unary, messages/s for stream), ``calls``,
``errors`` (calls that ended with a status other than OK, or a stream that ended short),
``statuses`` (error count per status), ``messages``, ``latency_ms`` (p50/p90/p99/max of whole
calls) and ``load_cpu_share`` (this process's CPU seconds per second of the window: near 1.0
the client, not the server, may be the limit). Counters are read at the deadline, so a call that
ends later does not count; then no new call starts and those in flight finish (nothing is reset).

Both modes use grpcio's synchronous API, because on bench.py's setup (server on one CPU, this
process on another) it loads the servers harder than ``grpc.aio``:

- unary: futures, ``--concurrency`` outstanding, each done-callback starting the next call. 50
  aio coroutines kept servers at 80-95% of their CPU, these futures at 93-100%, with more
  calls/s. This process then uses 85-90% of its CPU, and a second one beside it (two
  connections, 25 calls each) moved calls/s by less than the run-to-run noise: the servers set
  the rate.
- stream: one thread per concurrent call, with the channel option ``SingleThreadedUnaryStream``:
  the iterator reads its call's messages in its own thread instead of taking each one over from
  grpc's polling thread. Without it, the sync iterator and ``grpc.aio`` alike top out at
  30,000-40,000 small messages/s with this process at 100% CPU and the servers at 20-30%; with
  it, 2.5-3x that, and still this process at 100% and the servers at 50-75%: grpcio cannot load
  a server with small streamed messages from one CPU (bench.py's grpc-stream-h2load can).
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402  (after the path set-up, like the stubs)
import grpc.experimental  # noqa: E402

from examples.grpc_echo import stubs  # noqa: E402

SERVICE = "/caboose.echo.v1.Echo/"
# Seconds: a call that hangs this long is an error, not a stall of the run. Sent as grpc-timeout,
# as clients in production send deadlines, so the app arms a deadline on every call (h2load sends
# no grpc-timeout: part of why the -h2load twins cost the servers less per call).
CALL_TIMEOUT = 30.0
DRAIN_TIMEOUT = 10.0  # seconds the calls in flight at the deadline get to finish
# No HTTP proxy from the environment: every byte goes straight to the target on 127.0.0.1.
OPTIONS: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0)]
STREAM_OPTIONS = [*OPTIONS, (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]


def load_stubs() -> tuple[Any, Any]:
    return stubs.load("echo_pb2"), stubs.load("echo_pb2_grpc")


def echo_request(pb: Any, args: argparse.Namespace) -> Any:
    """The request every call of a run sends: ``--payload`` bytes, echoed back by Unary and by
    each of the ``--count`` messages of ServerStream."""
    if args.kind == "unary":
        return pb.EchoRequest(message="hello", payload=b"x" * args.payload)
    return pb.EchoRequest(message="m", payload=b"x" * args.payload, count=args.count)


def target_of(url: str) -> str:
    """``http://127.0.0.1:PORT/`` -> ``ipv4:127.0.0.1:PORT``: an address, no name to resolve."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise SystemExit(f"grpc_load: want http://HOST:PORT/, got {url!r}")
    return f"ipv4:{parts.hostname}:{parts.port}"


def cpu_seconds() -> float:
    """CPU time of this process, all of grpc's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    """What one worker (or, under a lock, all unary callbacks) saw."""

    calls: int = 0  # ended OK
    messages: int = 0  # response messages received, counted as they arrive
    latencies: list[float] = field(default_factory=list)  # seconds, per OK call
    statuses: Counter[str] = field(default_factory=Counter)  # failed calls by status

    def copy(self) -> Tally:
        return Tally(self.calls, self.messages, list(self.latencies), Counter(self.statuses))

    @staticmethod
    def total(tallies: list[Tally]) -> Tally:
        out = Tally()
        for t in tallies:
            out.calls += t.calls
            out.messages += t.messages
            out.latencies += t.latencies
            out.statuses += t.statuses
        return out


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1] * 1e3}


# --------------------------------------------------------------------------- unary


class UnaryLoad:
    """Keeps ``concurrency`` unary calls outstanding with futures. The done-callback of an OK call
    (run on one of grpc's threads) records it and starts the next one at once, so no thread of
    ours sits in between. A failed call is retried from the main thread instead: a call to a
    server that is gone can fail before ``add_done_callback`` returns, which then runs the
    callback inline, and relaunching from there would recurse without bound."""

    def __init__(self, channel: grpc.Channel, pb: Any, request: Any, concurrency: int) -> None:
        self.method = channel.unary_unary(
            SERVICE + "Unary",
            request_serializer=pb.EchoRequest.SerializeToString,
            response_deserializer=pb.EchoResponse.FromString,
        )
        self.request = request
        self.concurrency = concurrency
        self.lock = threading.Lock()
        self.tally = Tally()
        self.stopping = False
        self.in_flight = 0  # calls started and not yet recorded, or waiting for a retry
        self.retries: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.drained = threading.Event()

    def run(self, duration: float) -> None:
        """Start the calls and keep them going for ``duration`` seconds."""
        deadline = time.perf_counter() + duration
        with self.lock:
            self.in_flight = self.concurrency
        for _ in range(self.concurrency):
            self._launch()
        while (left := deadline - time.perf_counter()) > 0:
            try:
                self.retries.get(timeout=left)
            except queue.Empty:
                break
            time.sleep(0.001)  # a server refusing every call must not make this spin
            self._launch()

    def _launch(self) -> None:
        started = time.perf_counter()
        future = self.method.future(self.request, timeout=CALL_TIMEOUT)
        future.add_done_callback(lambda f: self._done(f, started))

    def _done(self, future: Any, started: float) -> None:
        ok = future.code() == grpc.StatusCode.OK
        with self.lock:
            if ok:
                self.tally.calls += 1
                self.tally.messages += 1
                self.tally.latencies.append(time.perf_counter() - started)
            else:
                self.tally.statuses[future.code().name] += 1
            if self.stopping:
                self._finished(1)
                return
        if ok:
            self._launch()
        else:
            self.retries.put(None)

    def _finished(self, calls: int) -> None:  # with self.lock held
        self.in_flight -= calls
        if self.in_flight <= 0:
            self.drained.set()

    def snapshot(self) -> Tally:
        with self.lock:
            return self.tally.copy()

    def stop(self) -> None:
        """Start no more calls and wait for those in flight."""
        with self.lock:
            self.stopping = True
            waiting = 0
            while not self.retries.empty():
                self.retries.get()
                waiting += 1
            self._finished(waiting)
        self.drained.wait(DRAIN_TIMEOUT)


# --------------------------------------------------------------------------- server streaming


class StreamLoad:
    """``concurrency`` threads, each making one server-streaming call after another and counting
    every message as it arrives (a call cut by the deadline counts the messages it got)."""

    def __init__(self, channel: grpc.Channel, pb: Any, request: Any, concurrency: int) -> None:
        self.method = channel.unary_stream(
            SERVICE + "ServerStream",
            request_serializer=pb.EchoRequest.SerializeToString,
            response_deserializer=pb.EchoResponse.FromString,
        )
        self.request = request
        self.count = request.count
        self.tallies = [Tally() for _ in range(concurrency)]
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._worker, args=(t,), daemon=True) for t in self.tallies
        ]

    def run(self, duration: float) -> None:
        for thread in self.threads:
            thread.start()
        time.sleep(duration)

    def _worker(self, tally: Tally) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            received = 0
            try:
                for _ in self.method(self.request, timeout=CALL_TIMEOUT):
                    received += 1
                    tally.messages += 1
            except grpc.RpcError as exc:
                tally.statuses[exc.code().name] += 1
                time.sleep(0.001)  # a server that refuses at once must not make this spin
                continue
            if received == self.count:
                tally.calls += 1
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.statuses["SHORT_STREAM"] += 1

    def snapshot(self) -> Tally:
        # Other threads bump these counters meanwhile; reading an int or copying a list is
        # atomic under the GIL, and a message more or less at the deadline does not matter.
        return Tally.total([t.copy() for t in self.tallies])

    def stop(self) -> None:
        self.stopping.set()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------- modes


def warm_up(channel: grpc.Channel, pb: Any, pb_grpc: Any, timeout: float) -> None:
    """Connect and make one call, so the window measures calls and not the handshake."""
    grpc.channel_ready_future(channel).result(timeout=timeout)
    pb_grpc.EchoStub(channel).Unary(pb.EchoRequest(message="warm-up"), timeout=timeout)


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    pb, pb_grpc = load_stubs()
    request = echo_request(pb, args)
    options = STREAM_OPTIONS if args.mode == "stream" else OPTIONS
    with grpc.insecure_channel(target_of(args.url), options=options) as channel:
        warm_up(channel, pb, pb_grpc, timeout=10.0)
        load: UnaryLoad | StreamLoad
        if args.mode == "unary":
            load = UnaryLoad(channel, pb, request, args.concurrency)
        else:
            load = StreamLoad(channel, pb, request, args.concurrency)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        load.run(args.duration)
        seen = load.snapshot()
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        load.stop()
    errors = sum(seen.statuses.values())
    return {
        "mode": args.mode,
        "rate": (seen.calls if args.mode == "unary" else seen.messages) / elapsed,
        "unit": "calls/s" if args.mode == "unary" else "messages/s",
        "calls": seen.calls,
        "errors": errors,
        "statuses": dict(seen.statuses),
        "messages": seen.messages,
        "elapsed_s": elapsed,
        "concurrency": args.concurrency,
        "latency_ms": percentiles_ms(seen.latencies),
        "load_cpu_share": cpu / elapsed,
    }


def probe(args: argparse.Namespace) -> int:
    """One Unary call; exit 0 when it comes back right, 1 (and why, on stdout) otherwise."""
    pb, pb_grpc = load_stubs()
    with grpc.insecure_channel(target_of(args.url), options=OPTIONS) as channel:
        stub = pb_grpc.EchoStub(channel)
        try:
            reply = stub.Unary(
                pb.EchoRequest(message="probe", payload=b"\x00\xff"), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"Unary failed: {exc.code().name}: {exc.details()}")
            return 1
    if (reply.message, reply.payload) != ("probe", b"\x00\xff"):
        print(f"Unary answered {reply.message!r}, {reply.payload!r}")
        return 1
    return 0


def write_request(args: argparse.Namespace) -> int:
    pb, _ = load_stubs()
    message = echo_request(pb, args).SerializeToString()
    Path(args.file).parent.mkdir(parents=True, exist_ok=True)
    Path(args.file).write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return 0


def add_call_options(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--payload", type=int, default=16 if kind == "unary" else 100)
    if kind == "stream":
        parser.add_argument("--count", type=int, default=1000, help="messages per call")
    parser.set_defaults(kind=kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode, concurrency in (("unary", 50), ("stream", 10)):
        p = sub.add_parser(mode)
        p.add_argument("url")
        p.add_argument("--duration", type=float, default=5.0, help="seconds of measured load")
        p.add_argument("--concurrency", type=int, default=concurrency, help="calls in flight")
        add_call_options(p, mode)
    p = sub.add_parser("probe")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=2.0)
    sub.add_parser("stubs")
    p = sub.add_parser("request")
    p.add_argument("file")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind in ("unary", "stream"):
        add_call_options(kinds.add_parser(kind), kind)
    args = parser.parse_args()
    if args.mode == "stubs":
        load_stubs()
        return 0
    if args.mode == "request":
        return write_request(args)
    if args.mode == "probe":
        return probe(args)
    print(json.dumps(run_load(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
