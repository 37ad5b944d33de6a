"""Server metrics as plain numbers on the event loop; ``snapshot()`` is what an exporter reads.

Recording is a dict increment per finished exchange, so it stays cheap on the request path;
what can be read off live objects instead (open connections, HTTP/2 streams, the RST_STREAM
and GOAWAY tallies of each HTTP/2 core) is read only when a snapshot is taken. A snapshot is
plain, picklable data keyed by (metric, labels): snapshots of several worker processes add
up key by key (``merge``). The names, types and help texts are in ``METRICS``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from time import monotonic
from typing import Any

from caboose.errors import ErrorCode
from caboose.transport.access import Logged

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]
# A counter or gauge is a number; a histogram is its bucket counts (not cumulative), then sum.
Snapshot = dict[Key, Any]

# Seconds; fine at the low end, where a fast server's requests are.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
METRICS: dict[str, tuple[str, str]] = {
    "caboose_connections_total": (COUNTER, "Connections accepted, by the protocol they spoke."),
    "caboose_connections_open": (GAUGE, "Connections open now, by protocol."),
    "caboose_requests_total": (
        COUNTER,
        "HTTP exchanges finished, by protocol, status code and class, and how they ended.",
    ),
    "caboose_request_duration_seconds": (
        HISTOGRAM,
        "From a request's head to its response's end (or the exchange's), by protocol.",
    ),
    "caboose_http2_streams_total": (COUNTER, "HTTP/2 streams the clients opened."),
    "caboose_http2_streams_open": (GAUGE, "HTTP/2 streams open now."),
    "caboose_http2_resets_sent_total": (COUNTER, "RST_STREAM frames sent, by error code."),
    "caboose_http2_resets_received_total": (COUNTER, "RST_STREAM frames received, by error code."),
    "caboose_http2_goaways_sent_total": (COUNTER, "GOAWAY frames sent, by error code."),
    "caboose_http2_goaways_received_total": (COUNTER, "GOAWAY frames received, by error code."),
    "caboose_websocket_sessions_total": (COUNTER, "WebSocket handshakes handed to the app."),
    "caboose_websocket_sessions_open": (GAUGE, "WebSocket sessions not finished yet."),
    "caboose_workers": (GAUGE, "Worker processes serving (with --workers)."),
}

_TALLIES = (
    ("resets_sent", "caboose_http2_resets_sent_total"),
    ("resets_received", "caboose_http2_resets_received_total"),
    ("goaways_sent", "caboose_http2_goaways_sent_total"),
    ("goaways_received", "caboose_http2_goaways_received_total"),
)


def _protocol(version: str) -> str:
    return f"HTTP/{version}"


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class Metrics:
    """The metrics of one server process."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int, str], int] = {}  # (version, status, outcome)
        self.durations: dict[str, list[float]] = {}  # version -> bucket counts..., sum
        self.connections: dict[str, int] = {}
        self.ws_started: dict[str, int] = {}
        self.ws_ended: dict[str, int] = {}
        # What the HTTP/2 connections that have closed counted (live ones are read live).
        self.h2_retired: Snapshot = {}

    # -- recording: on the event loop --------------------------------------------------------

    def ended(self, stream: Logged, outcome: str) -> None:
        """An exchange ended (the same point as the access log)."""
        scope = stream.scope
        version: str = scope["http_version"]
        if scope["type"] == "websocket":
            self.ws_ended[version] = self.ws_ended.get(version, 0) + 1
            return
        key = (version, stream.status, outcome)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        elapsed = monotonic() - stream.started
        histogram = self.durations.get(version)
        if histogram is None:
            histogram = self.durations[version] = [0.0] * (len(BUCKETS) + 2)
        histogram[bisect_left(BUCKETS, elapsed)] += 1  # "le": a bound counts itself
        histogram[-1] += elapsed

    def connection_opened(self, protocol: str) -> None:
        self.connections[protocol] = self.connections.get(protocol, 0) + 1

    def websocket_started(self, version: str) -> None:
        self.ws_started[version] = self.ws_started.get(version, 0) + 1

    def h2_closed(self, core: Any) -> None:
        """An HTTP/2 connection is gone: keep what its core counted."""
        add(self.h2_retired, _h2_counts(core))

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self, connections: Iterable[Any]) -> Snapshot:
        """Everything, as (metric, labels) -> value; ``connections``: the open ones."""
        out: Snapshot = {}
        for (version, status, outcome), count in self.requests.items():
            code = str(status) if status else "none"
            labels: Labels = (
                ("protocol", _protocol(version)),
                ("code", code),
                ("class", f"{code[0]}xx" if status else "none"),
                ("outcome", outcome),
            )
            out["caboose_requests_total", labels] = count
        for version, histogram in self.durations.items():
            out["caboose_request_duration_seconds", (("protocol", _protocol(version)),)] = list(
                histogram
            )
        for protocol, count in self.connections.items():
            out["caboose_connections_total", (("protocol", protocol),)] = count
        for version, count in self.ws_started.items():
            labels = (("protocol", _protocol(version)),)
            out["caboose_websocket_sessions_total", labels] = count
            out["caboose_websocket_sessions_open", labels] = count - self.ws_ended.get(version, 0)
        add(out, self.h2_retired)
        out.setdefault(("caboose_http2_streams_total", ()), 0)
        out["caboose_http2_streams_open", ()] = 0
        for connection in connections:
            self._read_connection(out, connection)
        return out

    @staticmethod
    def _read_connection(out: Snapshot, connection: Any) -> None:
        protocol = getattr(connection, "protocol", "negotiating")
        key = ("caboose_connections_open", (("protocol", protocol),))
        out[key] = out.get(key, 0) + 1
        core = getattr(connection, "core", None)
        if protocol == "HTTP/2" and core is not None:
            add(out, _h2_counts(core))
            out["caboose_http2_streams_open", ()] += core.open_streams


def _h2_counts(core: Any) -> Snapshot:
    """What one HTTP/2 core counted: streams the client opened (its stream ids are odd and
    rising, RFC 9113 §5.1.1, so the highest one tells) and its RST_STREAM/GOAWAY tallies."""
    out: Snapshot = {("caboose_http2_streams_total", ()): (core.highest_peer_stream_id + 1) // 2}
    for attribute, metric in _TALLIES:
        for code, count in getattr(core.tally, attribute).items():
            out[metric, (("code", _error_name(code)),)] = count
    return out


def add(into: Snapshot, other: Snapshot) -> None:
    """Add ``other`` into ``into``, key by key (histograms bucket by bucket)."""
    for key, value in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = list(value) if isinstance(value, list) else value
        elif isinstance(value, list):
            into[key] = [a + b for a, b in zip(mine, value, strict=True)]
        else:
            into[key] = mine + value


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    total: Snapshot = {}
    for snapshot in snapshots:
        add(total, snapshot)
    return total


def counters_only(snapshot: Snapshot) -> Snapshot:
    """What of a finished worker's snapshot still counts: not its gauges."""
    return {key: value for key, value in snapshot.items() if METRICS[key[0]][0] != GAUGE}
