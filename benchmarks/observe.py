"""What the access log and the metrics cost: caboose on benchmarks/hello.py under option sets.

    .venv/bin/python benchmarks/observe.py                  # 3 rounds, the four option sets
    ROUNDS=5 REQUESTS=50000 .venv/bin/python benchmarks/observe.py
    TREES=/tmp/old,. .venv/bin/python benchmarks/observe.py  # also another checkout, A/B

Each run starts a fresh server (``python -m caboose``, uvloop, its stderr to /dev/null, so an
access line costs its write) pinned to CPU 0, and drives it from CPU 1 with
``h2load -n 200000 -c 10 -m 10`` (HTTP/2 cleartext) and ``h2load --h1 -n 200000 -c 10``; the
option sets and protocols alternate within each round. It prints the median req/s and the
server's CPU time per request (utime + stime from /proc), which shared machines disturb less.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = int(os.environ.get("REQUESTS", "200000"))
OPTION_SETS = {
    "access log on": [],
    "access log off": ["--no-access-log"],
    "log off, metrics on": ["--no-access-log", "--metrics-port", "0"],
    "log on, metrics on": ["--metrics-port", "0"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tree: Path, options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = ["taskset", "-c", "0", sys.executable, "-m", "caboose", "benchmarks.hello:app"]
    command += ["--port", str(port), "--loop", "uvloop", *options]
    server = subprocess.Popen(
        command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"caboose {' '.join(options)} did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(port: int, http1: bool) -> float:
    command = ["taskset", "-c", "1", "h2load", "-n", str(REQUESTS), "-c", "10"]
    command += ["--h1", "-m", "1"] if http1 else ["-m", "10"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    if f"{REQUESTS} succeeded" not in out:
        raise RuntimeError(out[-1000:])
    found = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    assert found, out
    return float(found.group(1))


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "3"))
    trees = [Path(t).resolve() for t in os.environ.get("TREES", str(ROOT)).split(",")]
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for tree in trees:
            for name, options in OPTION_SETS.items():
                for protocol in ("HTTP/2", "HTTP/1.1"):
                    label = f"{tree.name}: {name}" if len(trees) > 1 else name
                    server, port = start(tree, options)
                    try:
                        before = cpu_seconds(server.pid)
                        rate = drive(port, protocol == "HTTP/1.1")
                        cost = (cpu_seconds(server.pid) - before) / REQUESTS * 1e6
                    finally:
                        server.terminate()
                        server.wait(10)
                    rates.setdefault((label, protocol), []).append(rate)
                    costs.setdefault((label, protocol), []).append(cost)
    print("| options | protocol | req/s (median) | server CPU µs/request (median) | runs (req/s) |")
    print("| --- | --- | ---: | ---: | --- |")
    for (label, protocol), values in rates.items():
        cost = statistics.median(costs[label, protocol])
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {label} | {protocol} | {statistics.median(values):,.0f} | {cost:.1f} | {runs} |")


if __name__ == "__main__":
    main()
