"""Client throughput: caboose.client against httpx, aiohttp and niquests, on one fixed server.

    benchmarks/.venv/bin/python benchmarks/client_bench.py     # or: make bench-client

The server is Debian's nginx (one worker process, pinned to BENCH_SERVER_CPU), answering
``GET /`` with a 13-byte body straight from its configuration: fast enough that the client,
not the server, sets the rate. It listens on 127.0.0.1 twice, HTTP/1.1 on one port and h2c by
prior knowledge on the other, and runs from a private temporary folder, stopped by its PID.

Each client runs in its own process, pinned to BENCH_LOAD_CPU, on uvloop. It sends
BENCH_CLIENT_REQUESTS requests (default 20,000), BENCH_CLIENT_CONCURRENCY at a time (default
100), and reports requests/s and its own CPU seconds per request:

    caboose-h2    caboose.client, HTTP/2 prior knowledge: every request a stream of ONE connection
    httpx-h2      httpx 0.28 with http2=True, http1=False (h2c by prior knowledge), one connection
    niquests-h2   niquests with disable_http1=True and multiplexed=True (h2c, one connection)
    caboose-h1    caboose.client over HTTP/1.1, up to CONCURRENCY keep-alive connections
    aiohttp-h1    aiohttp over HTTP/1.1, a connector limited to CONCURRENCY connections
    httpx-h1      httpx over HTTP/1.1, the same limit

Rounds are interleaved (every client once, then again; BENCH_ROUNDS, default 3) and the
median is reported, with each HTTP/2 client's rate as a ratio to httpx-h2 and each HTTP/1.1
one's to aiohttp-h1. A run in which any request failed is reported as failed. Results also go
to benchmarks/results/client-<time>.json. Standard library only in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENTS = ("caboose-h2", "httpx-h2", "niquests-h2", "caboose-h1", "aiohttp-h1", "httpx-h1")
BASELINE = {"h2": "httpx-h2", "h1": "aiohttp-h1"}
BODY = b"hello, world\n"

NGINX = """
daemon off;
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    keepalive_requests 100000000;
    server {{ listen 127.0.0.1:{h1}; location / {{ return 200 "hello, world\\n"; }} }}
    server {{ listen 127.0.0.1:{h2} http2; location / {{ return 200 "hello, world\\n"; }} }}
}}
"""


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "") or default)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pin(cpu: str) -> list[str]:
    can_pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    return ["taskset", "-c", cpu] if can_pin and os.environ.get("BENCH_PIN", "1") != "0" else []


@contextlib.contextmanager
def nginx() -> Iterator[tuple[int, int]]:
    with tempfile.TemporaryDirectory(prefix="caboose-client-bench-") as folder:
        prefix = Path(folder)
        (prefix / "tmp").mkdir()
        ports = _free_port(), _free_port()
        config = prefix / "nginx.conf"
        config.write_text(NGINX.format(prefix=prefix, h1=ports[0], h2=ports[1]))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [*_pin(os.environ.get("BENCH_SERVER_CPU", "0")), binary, "-p", folder]
        argv += ["-c", str(config), "-e", str(prefix / "error.log")]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ports[1]), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("nginx did not start") from None
                    time.sleep(0.05)
            yield ports
        finally:
            process.terminate()
            process.wait(10)


# --------------------------------------------------------------------------- the workers


async def _drive(one: Callable[[], Awaitable[bytes]], requests: int, concurrency: int) -> int:
    """Run ``requests`` calls of ``one``, ``concurrency`` at a time; count the wrong bodies."""
    left = requests
    failed = 0

    async def worker() -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            try:
                if await one() != BODY:
                    failed += 1
            except Exception:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def _caboose(url: str, http2: bool, requests: int, concurrency: int) -> int:
    from caboose.client import Client

    async with Client(
        http2_prior_knowledge=http2, max_connections_per_origin=concurrency, timeout=60
    ) as client:

        async def one() -> bytes:
            return (await client.get(url)).content

        return await _drive(one, requests, concurrency)


async def _httpx(url: str, http2: bool, requests: int, concurrency: int) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(http2=http2, http1=not http2, limits=limits, timeout=60) as client:

        async def one() -> bytes:
            return (await client.get(url)).content

        return await _drive(one, requests, concurrency)


async def _aiohttp(url: str, http2: bool, requests: int, concurrency: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> bytes:
            async with session.get(url) as response:
                return await response.read()

        return await _drive(one, requests, concurrency)


async def _niquests(url: str, http2: bool, requests: int, concurrency: int) -> int:
    import niquests

    async with niquests.AsyncSession(disable_http1=True, multiplexed=True) as session:
        failed = 0
        # multiplexed: requests return lazily; gather() resolves a batch sent together
        for start in range(0, requests, concurrency):
            batch = [await session.get(url) for _ in range(min(concurrency, requests - start))]
            await session.gather()
            failed += sum(1 for response in batch if response.content != BODY)
        return failed


WORKERS: dict[str, Callable[[str, bool, int, int], Awaitable[int]]] = {
    "caboose": _caboose,
    "httpx": _httpx,
    "aiohttp": _aiohttp,
    "niquests": _niquests,
}


def worker_main(name: str, url: str, requests: int, concurrency: int) -> None:
    library, protocol = name.rsplit("-", 1)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    failed = asyncio.run(WORKERS[library](url, protocol == "h2", requests, concurrency))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "failed": failed}))


# --------------------------------------------------------------------------- the runner


def _run_one(name: str, ports: tuple[int, int], requests: int, concurrency: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{ports[1] if name.endswith('h2') else ports[0]}/"
    argv = [*_pin(os.environ.get("BENCH_LOAD_CPU", "1")), sys.executable, __file__, "--worker"]
    argv += [name, url, str(requests), str(concurrency)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:] or ["failed"]}
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = requests / figures["seconds"]
    figures["cpu_us"] = figures["cpu"] / requests * 1e6
    return figures


def main() -> int:
    requests = _env_int("BENCH_CLIENT_REQUESTS", 20_000)
    concurrency = _env_int("BENCH_CLIENT_CONCURRENCY", 100)
    rounds = _env_int("BENCH_ROUNDS", 3)
    wanted = os.environ.get("BENCH_CLIENTS", "").strip()
    clients = [c for c in CLIENTS if not wanted or c in wanted.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    with nginx() as ports:
        for round_number in range(1, rounds + 1):
            for name in clients:
                figures = _run_one(name, ports, requests, concurrency)
                runs[name].append(figures)
                shown = f"{figures['rps']:,.0f} req/s" if "rps" in figures else figures["error"]
                print(f"bench-client: round {round_number} {name}: {shown}", file=sys.stderr)
    print(_table(runs, requests, concurrency))
    folder = HERE / "results"
    folder.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (folder / f"client-{stamp}.json").write_text(json.dumps(runs, indent=1))
    return (
        0 if all(all("rps" in run and not run["failed"] for run in r) for r in runs.values()) else 1
    )


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run and not run.get("failed")]
    return statistics.median(values) if values else None


def _table(runs: dict[str, list[dict[str, Any]]], requests: int, concurrency: int) -> str:
    lines = [
        f"Client throughput: {requests:,} GETs, {concurrency} at a time, against nginx "
        "(medians of interleaved rounds)",
        "",
        "| client | req/s | client CPU per request | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, results in runs.items():
        rps = _median(results, "rps")
        cpu = _median(results, "cpu_us")
        base = _median(runs.get(BASELINE[name.rsplit("-", 1)[1]], []), "rps")
        if rps is None or cpu is None:
            lines.append(f"| {name} | failed | | |")
            continue
        ratio = f"{rps / base:.2f}x" if base else "n/a"
        lines.append(f"| {name} | {rps:,.0f} | {cpu:,.0f} µs | {ratio} |")
    lines.append("")
    lines.append("ratio: to httpx-h2 for HTTP/2 clients, to aiohttp-h1 for HTTP/1.1 clients")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
