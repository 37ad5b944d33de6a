"""Listening on a UNIX socket and on an inherited descriptor; the demo's endpoints."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from caboose.demo import app as demo_app
from tests.apps import hello
from tests.serving import running, url


def test_unix_domain_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "caboose.sock")
    with running(hello, uds=path):
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            assert client.get("http://localhost/").text == "Hello, world!"


def test_inherited_file_descriptor() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.detach()  # the server owns an inherited descriptor, and closes it
    with running(hello, fd=fd):
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"


def test_demo_index_echo_and_events() -> None:
    with running(demo_app) as server, httpx.Client(timeout=10) as client:
        index = client.get(url(server))
        assert "/trailers" in index.text and "/echo" in index.text and "/stream" in index.text
        assert client.post(url(server, "/echo"), content=b"ping").content == b"ping"
        with client.stream("GET", url(server, "/stream")) as events:
            assert events.headers["content-type"] == "text/event-stream"
            first = next(events.iter_lines())
        assert first == "id: 1"
        assert client.get(url(server, "/nothing")).status_code == 404
