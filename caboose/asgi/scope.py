"""Build the ASGI ``http`` scope from a request head (ASGI spec 2.4, HTTP connection scope)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from caboose.core.events import RequestReceived

Address = tuple[str, int] | None

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request-target into (path, query); absolute-form keeps only its path."""
    if not target.startswith(b"/"):
        # RFC 9112 §3.2.2 absolute-form (sent to proxies): drop scheme and authority.
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            path_start = target.find(b"/", scheme_end + 3)
            target = target[path_start:] if path_start != -1 else b"/"
    path, _, query = target.partition(b"?")
    path, _, _fragment = path.partition(b"#")
    return path, query


class ScopeBuilder:
    """Builds the ``http`` scopes of one connection; what all its requests share is set once."""

    __slots__ = ("client", "raw_root", "root_path", "scheme", "server", "state")

    def __init__(
        self,
        *,
        scheme: str,
        server: Address,
        client: Address,
        root_path: str,
        state: dict[str, Any],
    ) -> None:
        self.scheme = scheme
        self.server = server
        self.client = client
        self.root_path = root_path
        self.raw_root = root_path.encode("utf-8")
        self.state = state

    def http(self, event: RequestReceived, extensions: dict[str, Any]) -> dict[str, Any]:
        target = event.target
        if target[:1] == b"/" and b"#" not in target:
            raw_path, _, query = target.partition(b"?")  # origin-form, the usual case
        else:
            raw_path, query = split_target(target)
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path
        if root_path:
            path = root_path + path
            raw_path = self.raw_root + raw_path
        return {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": event.http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": event.method.decode("ascii"),
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": event.headers,
            "state": self.state.copy(),
            "extensions": extensions,
        }
