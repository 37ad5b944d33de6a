"""Benchmark driver: caboose against peer ASGI servers on the same hello-world app.

Run it through ``benchmarks/run.sh`` (or ``make bench``), which builds the separate benchmark venv
and then executes this file with that venv's Python. Standard library only.

A *scenario* is one protocol round: the servers to compare, how to load one of them, how to read
the load tool's output, and how to tell that a server is up. ``h1`` (wrk, HTTP/1.1) runs by default;
``h2c`` (h2load, HTTP/2 with prior knowledge) is defined too and runs when asked for. A new round
is one more ``Scenario`` in ``SCENARIOS``; nothing else has to change.

Each server is started once per scenario, rounds are interleaved (round 1 = every server in turn,
then round 2, ...) so that machine noise spreads evenly, and the median over rounds is reported.
All traffic goes to 127.0.0.1 only. Servers are stopped by the process group this driver started,
on success, error, Ctrl-C or SIGTERM alike.

Environment knobs (all optional):

    BENCH_DURATION=5         seconds per measured load run
    BENCH_ROUNDS=3           measured rounds per server
    BENCH_WARMUP=1           seconds of unmeasured load per server before round 1 (0: none)
    BENCH_CONNECTIONS=64     concurrent connections of the load tool
    BENCH_PIN=1|0            pin server to BENCH_SERVER_CPU and the load tool to BENCH_LOAD_CPU
                             (default: on when taskset exists and there are 2+ CPUs)
    BENCH_SERVER_CPU=0, BENCH_LOAD_CPU=1
    BENCH_START_TIMEOUT=10   seconds a server gets to answer its first request
    BENCH_SCENARIOS=h1       comma-separated scenario names (h1, h2c)
    BENCH_SERVERS=           comma-separated server names to keep (default: all of the scenario)

A load run with more than 1% failed requests (socket errors, non-2xx/3xx) is recorded but left out
of the median; a server with no valid run shows as "invalid" in the table.

Exit status: 0 when every server produced valid results, 1 when some server failed to start, died
or produced no valid run (the table is printed all the same), 2 on a bad BENCH_* value, 130 when
interrupted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"  # the only address this harness ever sends traffic to
APP = "benchmarks.hello:app"
BODY = b"Hello, world!"
BASELINE = "caboose"


# --------------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    rps: float
    p99_ms: float | None
    requests: int | None = None
    errors: int = 0  # socket errors, non-2xx/3xx, failed or timed-out requests
    latency_ms: dict[str, float] = field(default_factory=dict)


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(out: str) -> Measurement:
    """Read ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise ValueError("no 'Requests/sec' line in wrk output")
    latency = {
        f"p{m[1]}": _to_ms(m[2], m[3])
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    }
    requests = re.search(r"^\s*(\d+) requests in ", out, re.M)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return Measurement(
        rps=float(rps[1]),
        p99_ms=latency.get("p99"),
        requests=int(requests[1]) if requests else None,
        errors=errors,
        latency_ms=latency,
    )


def parse_h2load(out: str) -> Measurement:
    """Read h2load output. h2load prints no percentiles, so p99 stays unknown."""
    rps = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
    if rps is None:
        raise ValueError("no 'finished in ... req/s' line in h2load output")
    req = re.search(
        r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
        re.M,
    )
    latency: dict[str, float] = {}
    row = re.search(
        r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out, re.M
    )
    if row:
        latency = {
            "min": _to_ms(row[1], row[2]),
            "max": _to_ms(row[3], row[4]),
            "mean": _to_ms(row[5], row[6]),
        }
    return Measurement(
        rps=float(rps[1]),
        p99_ms=None,
        requests=int(req[3]) if req else None,
        errors=sum(int(req[i]) for i in (4, 5, 6)) if req else 0,
        latency_ms=latency,
    )


# --------------------------------------------------------------------------- readiness probes


def _recv_until_closed(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def probe_h1(port: int, timeout: float) -> str | None:
    """One real HTTP/1.1 GET. Returns None when the answer is right, else what was wrong."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        data = _recv_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        return f"unexpected status line {status[:60]!r}"
    if body != BODY:
        return f"unexpected body {body[:60]!r}"
    return None


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return header + struct.pack(">I", stream) + payload


def probe_h2c(port: int, timeout: float) -> str | None:
    """One real HTTP/2 GET over cleartext with prior knowledge (no HPACK library needed)."""
    authority = f"{HOST}:{port}".encode("ascii")
    # :method GET, :scheme http, :path / from the static table; :authority as a literal.
    block = b"\x82\x86\x84\x41" + bytes([len(authority)]) + authority
    request = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _h2_frame(0x4, 0, 0)  # empty SETTINGS
        + _h2_frame(0x1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )
    status_ok = False
    body = b""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        buf = b""
        while True:
            while len(buf) < 9:
                chunk = sock.recv(65536)
                if not chunk:
                    return "connection closed before the response ended"
                buf += chunk
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            while len(buf) < 9 + length:
                chunk = sock.recv(65536)
                if not chunk:
                    return "connection closed inside a frame"
                buf += chunk
            payload, buf = buf[9 : 9 + length], buf[9 + length :]
            if kind == 0x4 and not flags & 0x1:  # SETTINGS: acknowledge
                sock.sendall(_h2_frame(0x4, 0x1, 0))
            elif kind == 0x7:  # GOAWAY
                return f"GOAWAY, error code {int.from_bytes(payload[4:8], 'big')}"
            elif kind == 0x3 and stream == 1:  # RST_STREAM
                return f"RST_STREAM, error code {int.from_bytes(payload[:4], 'big')}"
            elif kind == 0x1 and stream == 1:  # HEADERS
                if flags & 0x8:  # PADDED
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                status_ok = status_ok or payload[:1] == b"\x88"  # :status 200 (static index 8)
            elif kind == 0x0 and stream == 1:  # DATA
                if flags & 0x8:
                    payload = payload[1 : len(payload) - payload[0]]
                body += payload
            if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:  # END_STREAM
                break
    if not status_ok:
        return "response status is not 200"
    if body != BODY:
        return f"unexpected body {body[:60]!r}"
    return None


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Server:
    name: str
    # Command line, split on whitespace, each word formatted with {bin} (the benchmark venv's
    # bin directory), {host}, {port} and {app}.
    command: str

    def argv(self, port: int) -> list[str]:
        return [w.format(bin=VENV_BIN, host=HOST, port=port, app=APP) for w in self.command.split()]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    tool: str  # executable the load command needs
    # Load command, split on whitespace, each word formatted with {duration} (seconds),
    # {connections} and {url}.
    load: str
    parse: Callable[[str], Measurement]  # load tool output -> Measurement (ValueError if unread)
    probe: Callable[[int, float], str | None]  # (port, timeout) -> None if served right
    servers: tuple[Server, ...]  # caboose first; every other one is a peer

    def load_argv(self, url: str, duration: int, connections: int) -> list[str]:
        return [
            w.format(url=url, duration=duration, connections=connections) for w in self.load.split()
        ]


# One worker process each, access log off, uvloop, warnings only. caboose mirrors uvicorn's CLI.
CABOOSE = Server(
    "caboose",
    "{bin}/caboose {app} --host {host} --port {port} --loop uvloop --no-access-log"
    " --log-level warning",
)
UVICORN = Server(
    "uvicorn",
    "{bin}/uvicorn {app} --host {host} --port {port} --loop uvloop --http httptools"
    " --no-access-log --log-level warning",
)
GRANIAN_CMD = (
    "{bin}/granian {app} --interface asgi --host {host} --port {port} --workers 1 --loop uvloop"
    " --no-access-log --log-level warning --http "
)
GRANIAN_H1 = Server("granian", GRANIAN_CMD + "1")
GRANIAN_H2 = Server("granian", GRANIAN_CMD + "2")
# hypercorn's access log is off unless --access-logfile is given.
HYPERCORN = Server(
    "hypercorn",
    "{bin}/hypercorn {app} --bind {host}:{port} --workers 1 --worker-class uvloop"
    " --log-level warning",
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="h1",
            description="HTTP/1.1 keep-alive GET, wrk",
            tool="wrk",
            load="wrk -t1 -c{connections} -d{duration}s --latency {url}",
            parse=parse_wrk,
            probe=probe_h1,
            servers=(CABOOSE, UVICORN, GRANIAN_H1),
        ),
        # Provisional: h2c with prior knowledge. caboose may need an HTTP/2 flag once it has one.
        Scenario(
            name="h2c",
            description="HTTP/2 cleartext (prior knowledge) GET, h2load, 10 streams/connection",
            tool="h2load",
            load="h2load -t1 -c{connections} -m10 -D{duration} {url}",
            parse=parse_h2load,
            probe=probe_h2c,
            servers=(CABOOSE, HYPERCORN, GRANIAN_H2),
        ),
    )
}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    duration: int
    rounds: int
    warmup: int
    connections: int
    pin: bool
    server_cpu: str
    load_cpu: str
    start_timeout: float
    scenarios: tuple[str, ...]
    servers: tuple[str, ...]


def usage_error(msg: str) -> NoReturn:
    print(f"bench: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        usage_error(f"{name} must be an integer, got {raw!r}")
    if value < minimum:
        usage_error(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_list(name: str, default: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip() or default
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def load_config() -> Config:
    can_pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    pin_raw = os.environ.get("BENCH_PIN", "").strip().lower()
    pin = can_pin if not pin_raw else pin_raw not in ("0", "no", "false", "off")
    if pin and not can_pin:
        print("bench: BENCH_PIN asked for, but taskset or a second CPU is missing", file=sys.stderr)
        pin = False
    scenarios = _env_list("BENCH_SCENARIOS", "h1")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        usage_error(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    return Config(
        duration=_env_int("BENCH_DURATION", 5, 1),
        rounds=_env_int("BENCH_ROUNDS", 3, 1),
        warmup=_env_int("BENCH_WARMUP", 1, 0),
        connections=_env_int("BENCH_CONNECTIONS", 64, 1),
        pin=pin,
        server_cpu=os.environ.get("BENCH_SERVER_CPU", "0"),
        load_cpu=os.environ.get("BENCH_LOAD_CPU", "1"),
        start_timeout=float(_env_int("BENCH_START_TIMEOUT", 10, 1)),
        scenarios=scenarios,
        servers=_env_list("BENCH_SERVERS", ""),
    )


# --------------------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Running:
    server: Server
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    status: str = "starting"  # starting | ok | failed | died
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def fail(self, status: str, error: str) -> None:
        self.status, self.error = status, error
        log(f"{self.server.name}: {status}: {error}")
        tail = self.log_tail()
        if tail:
            log(f"{self.server.name}: last lines of {self.log_path}:\n{tail}")


def start(
    server: Server, scenario: Scenario, cfg: Config, log_path: Path, started: list[Running]
) -> None:
    """Start one server and wait until it answers. Its Running goes into ``started`` before the
    process exists, so an interrupt at any point still finds it there to stop."""
    port = free_port()
    argv = server.argv(port)
    if cfg.pin:
        argv = ["taskset", "-c", cfg.server_cpu, *argv]
    run = Running(server=server, port=port, argv=argv, log_path=log_path)
    started.append(run)
    exe = argv[3] if cfg.pin else argv[0]
    if not Path(exe).exists():
        run.fail("failed", f"{exe} is not installed in the benchmark venv")
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log(f"{server.name}: starting on {HOST}:{port}: {' '.join(argv)}")
    with open(log_path, "wb") as out:
        try:
            # A new session makes the server the leader of its own process group, so stop() can
            # end it and every worker it forked, and a Ctrl-C in the terminal reaches us, not it.
            run.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            run.fail("failed", f"could not execute: {exc}")
            return
    wait_ready(run, scenario, cfg.start_timeout)
    if run.status != "ok":
        stop(run)  # a server that is not serving must not eat CPU during the others' runs


def wait_ready(run: Running, scenario: Scenario, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "never accepted a connection"
    while time.monotonic() < deadline:
        assert run.proc is not None
        code = run.proc.poll()
        if code is not None:
            run.fail("failed", f"exited with status {code} before answering")
            return
        try:
            problem = scenario.probe(run.port, max(0.2, min(2.0, deadline - time.monotonic())))
        except OSError as exc:
            last = f"probe: {exc.__class__.__name__}: {exc}"
        else:
            if problem is None:
                run.status = "ok"
                log(f"{run.server.name}: ready")
                return
            last = f"probe: {problem}"
        time.sleep(0.1)
    run.fail("failed", f"not answering correctly within {timeout:g}s ({last})")


def stop(run: Running) -> None:
    proc = run.proc
    if proc is None:
        return
    pgid = proc.pid  # start_new_session: the server leads its own group, pgid == pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{run.server.name}: did not stop within 5s, killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # Workers that outlived their parent are still in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    run.proc = None


# --------------------------------------------------------------------------- load runs


def load_once(
    run: Running, scenario: Scenario, cfg: Config, duration: int
) -> tuple[Measurement | None, str]:
    url = f"http://{HOST}:{run.port}/"
    argv = scenario.load_argv(url, duration, cfg.connections)
    if cfg.pin:
        argv = ["taskset", "-c", cfg.load_cpu, *argv]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"{scenario.tool} did not finish within {duration + 60}s"
    out = done.stdout + done.stderr
    if done.returncode != 0:
        return None, f"{scenario.tool} exited with status {done.returncode}: {out.strip()[-300:]}"
    try:
        return scenario.parse(done.stdout), out
    except ValueError as exc:
        return None, f"{exc}: {out.strip()[-300:]}"


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f} us" if value < 1 else f"{value:.2f} ms"


MAX_ERROR_SHARE = 0.01  # a run with more failed requests than this measures failure, not speed


def invalid_reason(m: Measurement) -> str | None:
    """Why a parsed load run must not count, or None when it may."""
    if not m.requests or m.rps <= 0:
        return f"no successful request ({m.errors} errors)"
    if m.errors > MAX_ERROR_SHARE * m.requests:
        return f"{m.errors} errors for {m.requests} requests"
    return None


def summarize(runs: list[Running]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        good = [r for r in run.runs if r.get("rps") is not None and not r.get("invalid")]
        p99s = [r["p99_ms"] for r in good if r.get("p99_ms") is not None]
        status, error = run.status, run.error
        if status == "ok" and not good:
            reasons = [r.get("invalid") or r.get("error") or "?" for r in run.runs]
            status = "invalid" if any(r.get("invalid") for r in run.runs) else "no results"
            error = f"no valid load run: {'; '.join(reasons)[:300]}"
        summary[run.server.name] = {
            "status": status,
            "error": error,
            "median_rps": statistics.median(r["rps"] for r in good) if good else None,
            "median_p99_ms": statistics.median(p99s) if p99s else None,
            "rounds_ok": len(good),
            "rounds_run": len(run.runs),
            "errors": sum(r.get("errors", 0) for r in good),
        }
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    base = summary.get(BASELINE, {}).get("median_rps")
    lines = [
        "| server | req/s (median) | p99 (median) | caboose/peer (req/s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in summary.items():
        rps = s["median_rps"]
        if rps is None:
            lines.append(f"| {name} | {s['status']} | n/a | n/a |")
            continue
        if name == BASELINE:
            ratio = "baseline"
        elif base is None or rps == 0:
            ratio = "n/a"
        else:
            ratio = f"{base / rps:.2f}x"
        lines.append(f"| {name} | {rps:,.0f} | {_fmt_ms(s['median_p99_ms'])} | {ratio} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- environment record


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def environment(scenario: Scenario) -> dict[str, Any]:
    commit = _command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "caboose"])
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": commit,
        "caboose_tree_dirty": bool(dirty),
        "load_tool": _command_output([scenario.tool, "--version"]),
        "packages": {
            d: _version(d)
            for d in ("caboose", "uvicorn", "granian", "hypercorn", "uvloop", "httptools")
        },
    }


# --------------------------------------------------------------------------- main loop


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into an exception so the ``finally`` that stops servers
    runs. SIGINT is set explicitly because a shell starting us in the background leaves it
    ignored, and then Python would never raise KeyboardInterrupt."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in watched}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_scenario(scenario: Scenario, cfg: Config, stamp: str) -> tuple[bool, bool]:
    """Returns (every server produced results, interrupted)."""
    servers = [s for s in scenario.servers if not cfg.servers or s.name in cfg.servers]
    if not servers:
        log(f"{scenario.name}: no server left after BENCH_SERVERS={','.join(cfg.servers)}")
        return False, False
    if shutil.which(scenario.tool) is None:
        log(f"{scenario.name}: {scenario.tool} is not installed; skipping the scenario")
        return False, False
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    log(
        f"{scenario.name}: {scenario.description}; {cfg.rounds} round(s) x {cfg.duration}s, "
        f"{cfg.connections} connections, pinned={cfg.pin}"
    )
    runs: list[Running] = []
    interrupted = False
    try:
        with terminate_as_interrupt():
            for server in servers:
                log_path = logs / f"{scenario.name}-{stamp}-{server.name}.log"
                start(server, scenario, cfg, log_path, runs)
            if cfg.warmup:
                for run in runs:
                    if run.status == "ok":
                        log(f"{run.server.name}: warm-up {cfg.warmup}s")
                        load_once(run, scenario, cfg, cfg.warmup)
            for rnd in range(1, cfg.rounds + 1):
                for run in runs:
                    if run.status != "ok":
                        continue
                    if not run.alive:
                        run.fail("died", f"server exited before round {rnd}")
                        continue
                    m, raw = load_once(run, scenario, cfg, cfg.duration)
                    record: dict[str, Any] = {"round": rnd, "raw": raw}
                    if m is None:
                        record["error"] = raw
                        log(f"round {rnd} {run.server.name}: load run failed: {raw}")
                    else:
                        record.update(
                            rps=m.rps,
                            p99_ms=m.p99_ms,
                            requests=m.requests,
                            errors=m.errors,
                            latency_ms=m.latency_ms,
                        )
                        problem = invalid_reason(m)
                        if problem:
                            record["invalid"] = problem
                        note = f", {m.errors} errors" if m.errors else ""
                        note += f" -- INVALID: {problem}" if problem else ""
                        log(
                            f"round {rnd} {run.server.name}: {m.rps:,.0f} req/s, "
                            f"p99 {_fmt_ms(m.p99_ms)}{note}"
                        )
                    run.runs.append(record)
                    if not run.alive:
                        run.fail("died", f"server exited during round {rnd}")
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = True
        log(f"interrupted ({exc.__class__.__name__} {exc}); stopping servers")
    finally:
        # A second Ctrl-C or SIGTERM must not leave servers behind.
        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in watched}
        try:
            for run in runs:
                stop(run)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    summary = summarize(runs)
    text = table(summary)
    print(f"\n### {scenario.name}: {scenario.description}\n")
    pinning = (
        f"server pinned to CPU {cfg.server_cpu}, load tool to CPU {cfg.load_cpu}"
        if cfg.pin
        else "not pinned"
    )
    print(
        f"{cfg.rounds} round(s) x {cfg.duration}s, {cfg.connections} connections, "
        f"median over rounds; {pinning}\n"
    )
    print(text)
    for name, info in summary.items():
        if info["error"]:
            print(f"\n- {name}: {info['error']}")
        else:
            if info["rounds_ok"] < info["rounds_run"]:
                skipped = info["rounds_run"] - info["rounds_ok"]
                print(f"\n- {name}: {skipped} of {info['rounds_run']} rounds invalid, left out")
            if info["errors"]:
                print(f"\n- {name}: {info['errors']} socket errors or failed responses counted")
    print(flush=True)

    result = {
        "scenario": scenario.name,
        "description": scenario.description,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "config": {
            "duration_s": cfg.duration,
            "rounds": cfg.rounds,
            "warmup_s": cfg.warmup,
            "connections": cfg.connections,
            "pinned": cfg.pin,
            "server_cpu": cfg.server_cpu if cfg.pin else None,
            "load_cpu": cfg.load_cpu if cfg.pin else None,
            "load_command": scenario.load,
            "app": APP,
            "host": HOST,
        },
        "environment": environment(scenario),
        "servers": {
            run.server.name: {
                **summary[run.server.name],
                "argv": run.argv,
                "log": str(run.log_path.relative_to(ROOT)),
                "runs": run.runs,
            }
            for run in runs
        },
        "table": text,
    }
    path = RESULTS / f"{scenario.name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"raw results: {path.relative_to(ROOT)}")
    return all(s["median_rps"] is not None for s in summary.values()), interrupted


def main() -> int:
    cfg = load_config()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    all_ok = True
    for name in cfg.scenarios:
        ok, interrupted = run_scenario(SCENARIOS[name], cfg, stamp)
        all_ok = all_ok and ok
        if interrupted:
            return 130
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
