"""What every connection of one server shares: config, app, default headers, bookkeeping."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from caboose.asgi.http import ASGIApp
from caboose.config import Config
from caboose.core.events import Headers
from caboose.transport.access import Ended
from caboose.transport.metrics import Metrics


@dataclass
class ServerState:
    config: Config
    app: ASGIApp
    # Server and Date, refreshed each second by the server (the core reads no clock).
    default_headers: Headers = field(default_factory=list)
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    connections: set[Any] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None
    requests_left: int | None = None  # --limit-max-requests (with its jitter), counting down
    exhausted: Callable[[], None] | None = None  # called when requests_left reaches 0
    metrics: Metrics | None = None  # --metrics-port
    # Called once as each exchange ends (the access log, the metrics); None: nobody listens.
    ended: Ended | None = None

    def count_request(self) -> None:
        left = self.requests_left
        if left is not None:
            self.requests_left = left - 1
            if left == 1 and self.exhausted is not None:
                self.exhausted()

    def over_capacity(self) -> bool:
        limit = self.config.limit_concurrency
        return limit is not None and len(self.connections) + len(self.tasks) > limit
