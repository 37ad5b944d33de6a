"""Prometheus metrics (--metrics-port): scraped with httpx from a server driven by real
clients (httpx, the h2 library, websockets), and from a real supervisor whose workers'
numbers must add up."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from caboose.config import Config
from caboose.server import Server, observe_exchanges
from tests.h2peer import H2Peer, frame, settle
from tests.integration.test_logging import run_cli
from tests.integration.test_workers import supervised
from tests.serving import running, url

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (key, got), value in samples.items() if key == name and wanted <= set(got))


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    path = scope["path"]
    await send({"type": "http.response.start", "status": 404 if path == "/missing" else 200})
    if path == "/fail-midway":
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise RuntimeError("midway")
    if path == "/endless":
        while True:
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
            await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"ok"})


def metrics_port(server: Server) -> int:
    assert server.metrics_port is not None
    return server.metrics_port


def test_requests_connections_and_durations() -> None:
    with running(app, metrics_port=0) as server:
        port = metrics_port(server)
        with httpx.Client() as h1:
            for _ in range(3):
                assert h1.get(url(server, "/")).status_code == 200
            assert h1.get(url(server, "/missing")).status_code == 404
            samples = scrape(port)
            assert total(samples, "caboose_connections_open", protocol="HTTP/1.1") == 1
        with httpx.Client(http1=False, http2=True) as h2:
            for _ in range(2):
                assert h2.get(url(server, "/")).status_code == 200
        samples = scrape(port)
    assert total(samples, "caboose_requests_total", protocol="HTTP/1.1", code="200") == 3
    assert total(samples, "caboose_requests_total", protocol="HTTP/1.1", **{"class": "4xx"}) == 1
    assert total(samples, "caboose_requests_total", protocol="HTTP/2", outcome="completed") == 2
    assert total(samples, "caboose_connections_total", protocol="HTTP/1.1") == 1
    assert total(samples, "caboose_connections_total", protocol="HTTP/2") == 1
    assert total(samples, "caboose_connections_open", protocol="HTTP/1.1") == 0
    assert total(samples, "caboose_http2_streams_total") == 2
    histogram = "caboose_request_duration_seconds"
    assert total(samples, f"{histogram}_count", protocol="HTTP/1.1") == 4
    assert total(samples, f"{histogram}_bucket", protocol="HTTP/2", le="+Inf") == 2
    assert 0 < total(samples, f"{histogram}_sum", protocol="HTTP/2") < 5


def test_http2_resets_goaways_and_streams() -> None:
    with running(app, metrics_port=0, cancel_grace=0.2) as server:
        port = metrics_port(server)
        with H2Peer(server.port) as peer:
            assert peer.wait(peer.request("/fail-midway")).reset is not None  # we reset it
            endless = peer.request("/endless")
            assert peer.pump(lambda: len(peer.stream(endless).data) > 8)
            open_now = scrape(port)
            peer.reset(endless)  # CANCEL from the client
            assert settle(
                lambda: total(scrape(port), "caboose_http2_resets_received_total") == 1, 5
            )
            peer.send(frame(0x0, 0, 0, b"x"))  # DATA on stream 0: PROTOCOL_ERROR (§6.1)
            assert peer.wait_closed()
        with H2Peer(server.port) as polite:
            assert polite.get("/").status == 200
            polite.conn.close_connection()
            polite.flush()
            assert polite.wait_closed()
        samples = scrape(port)
    assert total(open_now, "caboose_http2_streams_open") == 1
    assert total(open_now, "caboose_connections_open", protocol="HTTP/2") == 1
    assert total(samples, "caboose_http2_resets_sent_total", code="INTERNAL_ERROR") == 1
    assert total(samples, "caboose_http2_resets_received_total", code="CANCEL") == 1
    assert total(samples, "caboose_http2_goaways_sent_total", code="PROTOCOL_ERROR") == 1
    assert total(samples, "caboose_http2_goaways_received_total", code="NO_ERROR") == 1
    assert total(samples, "caboose_http2_streams_total") == 3
    assert total(samples, "caboose_http2_streams_open") == 0
    assert total(samples, "caboose_requests_total", outcome="reset") == 1
    assert total(samples, "caboose_requests_total", outcome="app error") == 1


def test_websocket_sessions() -> None:
    async def talk(port: int, metrics: int) -> tuple[Samples, str]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hi")
            echoed = str(await ws.recv())
            during = await asyncio.to_thread(scrape, metrics)
        return during, echoed

    with running(app, metrics_port=0) as server:
        during, echoed = asyncio.run(talk(server.port, metrics_port(server)))
        assert echoed == "hi"
        assert settle(
            lambda: total(scrape(metrics_port(server)), "caboose_websocket_sessions_open") == 0, 5
        )
        after = scrape(metrics_port(server))
    assert total(during, "caboose_websocket_sessions_open", protocol="HTTP/1.1") == 1
    assert total(after, "caboose_websocket_sessions_total", protocol="HTTP/1.1") == 1
    assert total(after, "caboose_requests_total") == 0  # a WebSocket is not counted as one


def fetch_pid(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.partition(b"\r\n\r\n")[2])


def test_workers_add_up_and_a_dead_workers_counts_stay(tmp_path: Path) -> None:
    with supervised(tmp_path, "--workers", "2", "--metrics-port", "0") as server:
        pids = server.ready(2)
        found = re.search(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics", server.log())
        assert found, server.log()
        port = int(found.group(1))
        served: Counter[int] = Counter()
        for _ in range(200):
            served[fetch_pid(server.port)] += 1
            if len(served) == 2 and sum(served.values()) >= 40:
                break
        assert set(served) == pids, served  # both workers answered some
        count = sum(served.values())
        requests = "caboose_requests_total"
        assert settle(lambda: total(scrape(port), requests) == count, 10), scrape(port)
        samples = scrape(port)
        assert total(samples, requests, protocol="HTTP/1.1", code="200") == count
        assert total(samples, "caboose_connections_total", protocol="HTTP/1.1") == count
        assert total(samples, "caboose_workers") == 2
        os.kill(next(iter(pids)), signal.SIGKILL)
        assert settle(lambda: len(server.workers()) == 2 and server.workers() != pids, 15)
        assert settle(lambda: total(scrape(port), "caboose_workers") == 2, 15)
        assert total(scrape(port), requests) == count  # what the dead one counted stays
        fetch_pid(server.port)
        assert settle(lambda: total(scrape(port), requests) == count + 1, 10)


def test_without_prometheus_client_the_flag_is_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--metrics-port", "9100", hide="prometheus_client")
    assert result.returncode == 1
    assert result.stderr == (
        "caboose: error: --metrics-port needs prometheus_client: pip install 'caboose[metrics]'\n"
    )


def test_with_metrics_and_the_access_log_off_nothing_listens() -> None:
    assert observe_exchanges(Config(access_log=False), None) is None
