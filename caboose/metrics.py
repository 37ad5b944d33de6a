"""Prometheus exposition (``--metrics-port``): /metrics served apart from the app.

prometheus_client's own HTTP server runs in a thread and a collector turns a snapshot of
``transport/metrics.py`` into metric families when it is scraped. The snapshot comes from
the server's event loop (one process), or from the supervisor, which adds up what its
workers report with their heartbeats (``--workers``). prometheus_client is optional:
``pip install 'caboose[metrics]'``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from caboose.errors import ConfigError
from caboose.transport.metrics import (
    BUCKETS,
    COUNTER,
    GAUGE,
    METRICS,
    Metrics,
    Snapshot,
    add,
    counters_only,
    merge,
)

logger = logging.getLogger("caboose.error")

SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for the event loop's snapshot


class SnapshotCollector:
    """A prometheus_client collector over ``read()``: every scrape reads a fresh snapshot."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        kinds: dict[str, Any] = {
            COUNTER: CounterMetricFamily,
            GAUGE: GaugeMetricFamily,
        }
        families: dict[str, Any] = {}
        for (name, labels), value in sorted(self.read().items()):
            kind, help_text = METRICS[name]
            family = families.get(name)
            if family is None:
                make = kinds.get(kind, HistogramMetricFamily)
                family = families[name] = make(name, help_text, labels=[k for k, _ in labels])
            values = [v for _, v in labels]
            if kind in kinds:
                family.add_metric(values, value)
            else:
                family.add_metric(values, buckets=_cumulative(value), sum_value=value[-1])
        yield from families.values()


def _cumulative(histogram: list[float]) -> list[tuple[str, float]]:
    """Our bucket counts (each its own) as Prometheus's cumulative ``le`` buckets."""
    buckets, running = [], 0.0
    for bound, count in zip([*map(str, BUCKETS), "+Inf"], histogram[:-1], strict=True):
        running += count
        buckets.append((bound, running))
    return buckets


class Exporter:
    """The /metrics endpoint, until ``stop()``."""

    def __init__(self, host: str, port: int, read: Callable[[], Snapshot]) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(read))
        try:
            self.httpd, self.thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: {exc.strerror or exc}") from None
        self.port = int(self.httpd.server_port)
        where = f"[{host}]" if ":" in host else host
        logger.info("Metrics on http://%s:%d/metrics", where, self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def loop_reader(
    metrics: Metrics, connections: set[Any], loop: asyncio.AbstractEventLoop
) -> Callable[[], Snapshot]:
    """Read a snapshot on the server's event loop (the one thread that changes the numbers),
    from the exporter's thread."""

    def read() -> Snapshot:
        result: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                result.set_result(metrics.snapshot(list(connections)))
            except BaseException as exc:  # the scrape fails, the loop goes on
                result.set_exception(exc)

        loop.call_soon_threadsafe(take)
        return result.result(SCRAPE_TIMEOUT)

    return read


class WorkerTotals:
    """The supervisor's sum of its workers' snapshots; what ended workers counted stays."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[int, Snapshot] = {}  # worker pid -> its latest snapshot
        self.retired: Snapshot = {}
        self.workers = 0

    def report(self, pid: int, snapshot: Snapshot) -> None:
        with self.lock:
            self.live[pid] = snapshot

    def retire(self, pid: int) -> None:
        with self.lock:
            snapshot = self.live.pop(pid, None)
            if snapshot is not None:
                add(self.retired, counters_only(snapshot))

    def read(self) -> Snapshot:
        with self.lock:
            total = merge([self.retired, *self.live.values()])
            total["caboose_workers", ()] = self.workers
        return total
