"""Zero loss across restarts: steady load while the server is told SIGTERM, SIGHUP or SIGKILL.

The client is curl (libcurl over nghttp2), which behaves as RFC 9113 §6.8 and RFC 9112 §9.3.1
let a client behave: a stream above a GOAWAY's last stream id, a REFUSED_STREAM, or a reused
keep-alive connection that closes before any byte of the response is retried on a new
connection. Everything else is the client's loss.

The app keeps a ledger (one file, appended to by every worker): a line when a request reaches
it and one when its last byte is handed over. Each request is then one of

- completed: status 200 and every byte of its body;
- not accepted: the connection was refused, or it failed before any byte of a response and
  the app never saw it (the server never took it on, so the client may send it again);
- lost: anything else — the app saw it and the client did not get all of it. Must be none.

A slow streaming response (1 s, ten pieces) is every tenth request, so several are always in
flight when the signal arrives; the test checks that some were.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_workers import serving, supervised
from tests.processes import Supervised, until
from tests.tls import TestCertificate, issue_certificate

pytestmark = pytest.mark.timeout(120)

LEDGER_APP = """
import asyncio, os

LEDGER = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
PID = os.getpid()

def note(what, rid):
    os.write(LEDGER, f"{what} {rid} {PID}\\n".encode())  # one write: lines never interleave

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/":  # is it up? (not part of the load)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(PID).encode()})
        return
    rid = scope["query_string"].decode().partition("id=")[2]
    note("start", rid)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/stream":
        for _ in range(10):
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            await asyncio.sleep(0.1)
    else:
        await asyncio.sleep(0.05)
    note("end", rid)
    await send({"type": "http.response.body", "body": f"end {rid}\\n".encode()})
"""

REQUESTS = 600  # about 4 s of load at 20 at a time (on an idle machine)
RELOAD_REQUESTS = 1200  # a reload must happen well within the load
SLOW_EVERY = 10


def path_of(rid: int) -> str:
    return "/stream" if rid % SLOW_EVERY == 0 else "/quick"


def body_size(rid: int) -> int:
    streamed = 10 * 1000 if path_of(rid) == "/stream" else 0
    return streamed + len(f"end {rid}\n")


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[tuple[str, int, int]]:
        entries = []
        for line in self.path.read_text().splitlines():
            what, rid, pid = line.split()
            entries.append((what, int(rid), int(pid)))
        return entries

    def started(self) -> dict[int, int]:
        """Request id -> the PID of the worker that took it on."""
        return {rid: pid for what, rid, pid in self.lines() if what == "start"}

    def in_flight(self) -> set[int]:
        started, ended = set(), set()
        for what, rid, _ in self.lines():
            (started if what == "start" else ended).add(rid)
        return started - ended


class CurlLoad:
    """``count`` transfers, ``parallel`` at a time: HTTP/2 (over TLS) multiplexes them on one
    connection, HTTP/1.1 spreads them over ``parallel`` keep-alive connections.

    HTTP/2 is over TLS because curl 7.88's --parallel breaks h2c by prior knowledge (its
    pending transfers fail with "Error in the HTTP2 framing layer", against hypercorn too).
    """

    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        tls: TestCertificate | None,
        count: int = REQUESTS,
        parallel: int = 20,
    ) -> None:
        self.count = count
        config = workdir / "urls.curl"
        origin = f"https://127.0.0.1:{port}" if tls else f"http://127.0.0.1:{port}"
        with config.open("w") as out:
            for rid in range(count):
                out.write(f'url = "{origin}{path_of(rid)}?id={rid}"\n')
                out.write('output = "/dev/null"\n')
        version = ["--http2", "--cacert", str(tls.ca)] if tls else ["--http1.1"]
        command = ["curl", "-s", *version, "--parallel", "--parallel-max", str(parallel)]
        command += ["--max-time", "30", "-w", "%{json}\\n", "-K", str(config)]
        # Into a file, not a pipe: a full pipe would stop curl reading the server, whose
        # streams would then wait on a window that never opens.
        self.report = workdir / "transfers.jsonl"
        with self.report.open("w") as report:
            self.process = subprocess.Popen(command, stdout=report)

    def results(self, timeout: float = 60) -> dict[int, dict[str, object]]:
        self.process.wait(timeout)
        results = {}
        for line in self.report.read_text().splitlines():
            transfer = json.loads(line)
            rid = int(str(transfer["url"]).rpartition("id=")[2])
            results[rid] = transfer
        assert len(results) == self.count, f"curl reported {len(results)} of {self.count}"
        return results

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)


@dataclass
class Tally:
    completed: int
    refused: int  # connection refused
    unanswered: int  # failed before any response byte, never seen by the app
    lost: list[str]  # what went wrong with each lost one

    def __str__(self) -> str:
        return (
            f"completed {self.completed}, refused {self.refused}, "
            f"unanswered (never accepted) {self.unanswered}, lost {len(self.lost)}"
        )


def tally(results: dict[int, dict[str, object]], started: dict[int, int]) -> Tally:
    kinds: Counter[str] = Counter()
    lost = []
    for rid, transfer in sorted(results.items()):
        received = int(str(transfer["size_download"]))
        if transfer["exitcode"] == 0 and transfer["http_code"] == 200:
            if received == body_size(rid):
                kinds["completed"] += 1
                continue
        elif transfer["exitcode"] == 7 and rid not in started:
            kinds["refused"] += 1
            continue
        elif received == 0 and rid not in started:
            kinds["unanswered"] += 1
            continue
        lost.append(f"{rid}: {transfer['errormsg']} ({received} of {body_size(rid)} bytes)")
    return Tally(kinds["completed"], kinds["refused"], kinds["unanswered"], lost)


def underway(ledger: Ledger) -> set[int]:
    """Wait until the load is well under way with slow streams in flight; those in flight."""
    assert until(lambda: len(ledger.started()) >= 60, 20), "the load never got going"
    assert until(lambda: any(path_of(rid) == "/stream" for rid in ledger.in_flight()), 5)
    return ledger.in_flight()


@dataclass
class Run:
    tally: Tally
    straddling: set[int]  # in flight when the signal came
    results: dict[int, dict[str, object]]  # curl's report of each transfer
    ledger: Ledger
    load: CurlLoad

    def completed_straddling(self) -> bool:
        return all(
            self.results[rid]["exitcode"] == 0
            and self.results[rid]["size_download"] == body_size(rid)
            for rid in self.straddling
        )


def loaded_run(
    tmp_path: Path,
    workers: list[str],
    act: Callable[[Supervised, CurlLoad], None],
    *,
    http2: bool,
    count: int = REQUESTS,
) -> Run:
    """Serve the ledger app, start the load, ``act`` once it is well under way, tally."""
    ledger = Ledger(tmp_path / "ledger")
    env = {"LEDGER": str(ledger.path)}
    tls = issue_certificate(tmp_path) if http2 else None
    options = list(workers)
    if tls is not None:
        options += ["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    with supervised(tmp_path, *options, env=env, app=LEDGER_APP) as server:
        port = up(server, workers, tls)
        load = CurlLoad(tmp_path, port, tls=tls, count=count)
        try:
            straddling = underway(ledger)
            act(server, load)
            results = load.results()
        finally:
            load.stop()
    run = Run(tally(results, ledger.started()), straddling, results, ledger, load)
    print(f"\n{'h2' if http2 else 'h1'} {workers or 'one process'}: {run.tally}")
    return run


def up(server: Supervised, workers: list[str], tls: TestCertificate | None) -> int:
    """Wait until the server answers (all its workers, if any); its port."""
    if tls is None:
        return serving(server, workers)
    if workers:
        server.ready(int(workers[1]))
    port = server.port
    context = ssl.create_default_context(cafile=str(tls.ca))

    def answers() -> bool:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with raw, context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return True
        except OSError:
            return False

    assert until(answers)
    return port


@pytest.mark.parametrize("http2", [False, True], ids=["h1-keepalive", "h2-multiplexed"])
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_sigterm_under_load_loses_nothing(tmp_path: Path, workers: list[str], http2: bool) -> None:
    def sigterm(server: Supervised, _load: CurlLoad) -> None:
        server.signal(signal.SIGTERM)
        assert server.process.wait(20) == 0, server.log()

    run = loaded_run(tmp_path, workers, sigterm, http2=http2)
    assert run.tally.lost == [], (str(run.tally), run.tally.lost[:5])
    assert run.completed_straddling()  # the ones in flight at the signal finished
    assert run.tally.refused > 0  # the shutdown really came in the middle of the load
    assert run.tally.completed >= 60


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["systemd", "ctrl-c"])
def test_a_signal_to_the_whole_group_still_drains(tmp_path: Path, signum: int) -> None:
    """Each worker hears it twice (from the sender and from the supervisor): still graceful."""

    def to_everyone(server: Supervised, _load: CurlLoad) -> None:
        server.signal_group(signum)
        assert server.process.wait(20) == 0, server.log()

    run = loaded_run(tmp_path, ["--workers", "2"], to_everyone, http2=False)
    assert run.tally.lost == [], (str(run.tally), run.tally.lost[:5])
    assert run.completed_straddling()
    assert run.tally.refused > 0


@pytest.mark.parametrize("http2", [False, True], ids=["h1-keepalive", "h2-multiplexed"])
def test_sighup_under_load_loses_nothing_and_refuses_nothing(tmp_path: Path, http2: bool) -> None:
    old: set[int] = set()

    def sighup(server: Supervised, load: CurlLoad) -> None:
        old.update(server.workers())
        server.signal(signal.SIGHUP)
        assert until(lambda: len(server.workers()) == 2 and not server.workers() & old, 20)
        assert load.process.poll() is None, "the load ended before the reload did"

    run = loaded_run(tmp_path, ["--workers", "2"], sighup, http2=http2, count=RELOAD_REQUESTS)
    assert run.tally.lost == [], (str(run.tally), run.tally.lost[:5])
    not_completed = {
        rid: (t["exitcode"], t["http_code"], t["errormsg"], t["size_download"])
        for rid, t in run.results.items()
        if t["exitcode"] != 0 or t["size_download"] != body_size(rid)
    }
    assert run.tally.completed == RELOAD_REQUESTS, (str(run.tally), not_completed)  # throughout
    assert run.completed_straddling()
    served = set(run.ledger.started().values())
    assert served & old and served - old  # old workers and new ones served the load


def test_a_worker_killed_under_load_is_replaced_and_the_others_keep_serving(
    tmp_path: Path,
) -> None:
    originals: set[int] = set()

    def sigkill(server: Supervised, _load: CurlLoad) -> None:
        originals.update(server.workers())
        victim = min(originals)
        os.kill(victim, signal.SIGKILL)
        assert until(lambda: len(server.workers()) == 2 and victim not in server.workers(), 15)
        # New connections reach the replacement too (curl keeps its own to the survivor).
        port = server.port
        assert until(lambda: Supervised._answering(port) - originals > set()), server.log()

    run = loaded_run(tmp_path, ["--workers", "2"], sigkill, http2=False)
    started = run.ledger.started()
    victim = min(originals)
    # Only what the killed worker held can be lost; every other request completed.
    lost = run.tally.lost
    others = [line for line in lost if started.get(int(line.split(":")[0])) != victim]
    assert others == [], others[:5]
    print(f"lost with the killed worker: {len(lost)}")
