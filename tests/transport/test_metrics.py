"""The metrics' arithmetic: histogram buckets, adding snapshots up, the exposition."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from caboose.metrics import SnapshotCollector, WorkerTotals
from caboose.transport.metrics import BUCKETS, Metrics, add, counters_only, merge


class Exchange:
    def __init__(self, duration: float, status: int = 200, version: str = "2") -> None:
        self.scope: dict[str, Any] = {"type": "http", "http_version": version}
        self.status = status
        self.stream_id = 1
        self.sent = 0
        self.started = 0.0
        self.response_headers = ()
        self.duration = duration


def record(metrics: Metrics, *exchanges: Exchange, now: float = 1000.0) -> None:
    for exchange in exchanges:
        exchange.started = now - exchange.duration
        metrics.ended(exchange, "completed")


def test_a_duration_on_a_bound_counts_in_that_bucket(monkeypatch: Any) -> None:
    monkeypatch.setattr("caboose.transport.metrics.monotonic", lambda: 1000.0)
    metrics = Metrics()
    record(metrics, Exchange(0.0004), Exchange(0.0005), Exchange(0.25), Exchange(60.0))
    histogram = metrics.snapshot([])["caboose_request_duration_seconds", (("protocol", "HTTP/2"),)]
    assert histogram[0] == 2  # <= 0.5 ms
    assert histogram[BUCKETS.index(0.25)] == 1
    assert histogram[len(BUCKETS)] == 1  # above the last bound: +Inf only
    assert abs(histogram[-1] - 60.2509) < 1e-6  # the sum


def test_snapshots_add_up_and_a_finished_workers_gauges_go() -> None:
    one = {("caboose_requests_total", (("code", "200"),)): 2, ("caboose_workers", ()): 1}
    two = {("caboose_requests_total", (("code", "200"),)): 3, ("h", ()): [1, 2, 0.5]}
    total = merge([one, two, {("h", ()): [1, 0, 0.25]}])
    assert total == {
        ("caboose_requests_total", (("code", "200"),)): 5,
        ("caboose_workers", ()): 1,
        ("h", ()): [2, 2, 0.75],
    }
    assert counters_only(one) == {("caboose_requests_total", (("code", "200"),)): 2}
    into = dict(one)
    add(into, {})
    assert into == one


def test_the_supervisor_keeps_what_a_gone_worker_counted() -> None:
    totals = WorkerTotals()
    counted = ("caboose_requests_total", (("code", "200"),))
    open_now = ("caboose_connections_open", (("protocol", "HTTP/1.1"),))
    totals.report(11, {counted: 4, open_now: 1})
    totals.report(12, {counted: 1, open_now: 2})
    totals.report(11, {counted: 5, open_now: 1})  # a later report replaces the earlier
    assert totals.read()[counted] == 6 and totals.read()[open_now] == 3
    totals.retire(11)
    assert totals.read()[counted] == 6 and totals.read()[open_now] == 2


def test_the_exposition_has_cumulative_buckets_and_typed_families(monkeypatch: Any) -> None:
    monkeypatch.setattr("caboose.transport.metrics.monotonic", lambda: 1000.0)
    metrics = Metrics()
    record(metrics, Exchange(0.002), Exchange(0.02, status=503, version="1.1"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: metrics.snapshot([])))
    text = generate_latest(registry).decode()
    assert "# TYPE caboose_requests_total counter" in text
    assert "# TYPE caboose_request_duration_seconds histogram" in text
    assert (
        'caboose_requests_total{class="5xx",code="503",outcome="completed",protocol="HTTP/1.1"} '
        "1.0" in text
    )
    assert 'caboose_request_duration_seconds_bucket{le="0.001",protocol="HTTP/2"} 0.0' in text
    assert 'caboose_request_duration_seconds_bucket{le="0.0025",protocol="HTTP/2"} 1.0' in text
    assert 'caboose_request_duration_seconds_bucket{le="+Inf",protocol="HTTP/2"} 1.0' in text
    assert 'caboose_request_duration_seconds_count{protocol="HTTP/2"} 1.0' in text
