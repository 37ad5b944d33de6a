"""What HTTP/1.1 and HTTP/2 connections share: the peer, and turning a request into a stream."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from caboose.asgi.http import HTTPStream, StreamSink
from caboose.asgi.proxy import apply_proxy_headers, is_trusted
from caboose.asgi.scope import ScopeBuilder
from caboose.core.events import RequestReceived
from caboose.transport.state import ServerState


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension for a TLS connection (ASGI extensions, "TLS")."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    peer = ssl_object.getpeercert()
    version = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}.get(ssl_object.version() or "")
    return {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": _subject(peer) if peer else None,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": None if cipher is None else cipher[0],
    }


def _subject(cert: dict[str, Any]) -> str:
    parts = [f"{name}={value}" for rdn in cert.get("subject", ()) for name, value in rdn]
    return ",".join(parts)


class ConnectionInfo:
    """Facts about one connection, read once when it is made (never per request)."""

    __slots__ = ("_extensions", "behind_proxy", "client", "scheme", "scopes", "server", "tls")

    def __init__(self, transport: asyncio.BaseTransport, state: ServerState) -> None:
        config = state.config
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        ssl_object = transport.get_extra_info("ssl_object")
        self.scheme = "https" if ssl_object is not None or config.is_tls else "http"
        self.tls = tls_extension(ssl_object)
        # Parsing the peer address per request would be costly: decide trust once.
        self.behind_proxy = (
            config.proxy_headers
            and self.client is not None
            and is_trusted(self.client[0], state.trusted_proxies)
        )
        self._extensions = self._extension_template()
        self.scopes = ScopeBuilder(
            scheme=self.scheme,
            server=self.server,
            client=self.client,
            root_path=config.root_path,
            state=state.lifespan_state,
        )

    def extensions(self) -> dict[str, Any]:
        """The ASGI extensions a request on this connection may use: a fresh dict each time
        (an app may add to it), over info dicts that are the same for every request."""
        return self._extensions.copy()

    def _extension_template(self) -> dict[str, Any]:
        extensions: dict[str, Any] = {
            "http.response.trailers": {},
            "http.request.trailers": {},
            "http.response.early_hint": {},
            "http.response.pathsend": {},
        }
        if self.tls is not None:
            extensions["tls"] = self.tls
        return extensions


def open_stream(
    sink: StreamSink, info: ConnectionInfo, event: RequestReceived, state: ServerState
) -> HTTPStream:
    """The HTTPStream for a request head, its scope built and proxy headers applied."""
    headers = event.headers
    scope = info.scopes.http(event, info.extensions())
    if info.behind_proxy:
        apply_proxy_headers(scope, headers, state.trusted_proxies)
    return HTTPStream(
        sink,
        event.stream_id,
        scope,
        body_complete=event.end_stream,
        accepts_trailers=event.accepts_trailers,
        expect_continue=event.expect_continue,
    )
