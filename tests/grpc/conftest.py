"""Servers for the gRPC battery: both Echo apps of examples/grpc_echo, each over h2c, over TLS
(ALPN h2, a throwaway CA) and behind nginx's ``grpc_pass``.

A server starts the first time a test asks for its (app, transport) and serves until the
session ends, so the battery pays each start-up once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examples.grpc_echo import asgi_app, connect_app
from tests.nginx import grpc_proxy
from tests.serving import running
from tests.tls import TestCertificate, issue_certificate

APPS = {"asgi": asgi_app.app, "connect": connect_app.app}
DIRECT = [(app, transport) for app in APPS for transport in ("h2c", "tls")]
PROXIED = [(app, transport) for app in APPS for transport in ("nginx", "nginx-tls")]


@dataclass(frozen=True)
class Target:
    """Where a client dials: ``127.0.0.1:port``, with TLS when ``ca`` is set."""

    app: str
    transport: str
    port: int
    ca: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ca_pem(self) -> bytes:
        assert self.ca is not None
        return self.ca.read_bytes()


class Servers:
    def __init__(self, stack: contextlib.ExitStack, folder: Path) -> None:
        self._stack, self._folder = stack, folder
        self._started: dict[tuple[str, str], Target] = {}
        self._certificate: TestCertificate | None = None

    def get(self, app: str, transport: str) -> Target:
        key = (app, transport)
        if key not in self._started:
            self._started[key] = self._start(app, transport)
        return self._started[key]

    def _start(self, app: str, transport: str) -> Target:
        if transport == "h2c":
            return Target(app, transport, self._serve(app))
        if transport == "tls":
            certificate = self.certificate()
            return Target(
                app, transport, self._serve(app, **certificate.server_options()), certificate.ca
            )
        # nginx terminates the client's h2c and opens its own HTTP/2 upstream: h2c or TLS.
        upstream = self.get(app, transport.removeprefix("nginx").removeprefix("-") or "h2c")
        scheme = "grpcs" if upstream.ca else "grpc"
        prefix = self._folder / f"nginx-{app}-{transport}"
        port = self._stack.enter_context(grpc_proxy(prefix, f"{scheme}://{upstream.address}"))
        return Target(app, transport, port)

    def _serve(self, app: str, **options: Any) -> int:
        server = self._stack.enter_context(running(APPS[app], **options))
        return server.port

    def certificate(self) -> TestCertificate:
        if self._certificate is None:
            self._certificate = issue_certificate(self._folder)
        return self._certificate


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with contextlib.ExitStack() as stack:
        yield Servers(stack, tmp_path_factory.mktemp("grpc"))


def target_id(param: tuple[str, str]) -> str:
    return "-".join(param)
