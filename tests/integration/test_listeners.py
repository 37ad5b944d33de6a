"""Listening on a UNIX socket and on an inherited descriptor; the demo's endpoints."""

from __future__ import annotations

import socket
import subprocess
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


def listen_backlog(kind: str, where: str) -> int:
    """A listening socket's backlog, as ss shows it (its Send-Q)."""
    selector = f"src {where}" if kind == "x" else f"sport = :{where}"
    lines = subprocess.run(
        ["ss", f"-l{kind}nH", selector], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    (line,) = [line for line in lines if line.strip()]
    return int(line.split()[3 if kind == "x" else 2])


def test_backlog_holds_for_a_unix_socket_and_an_inherited_one(tmp_path: Path) -> None:
    path = str(tmp_path / "caboose.sock")
    with running(hello, uds=path, backlog=7):
        assert listen_backlog("x", path) == 7
    assert not Path(path).exists()  # removed at stop
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    with running(hello, fd=listener.detach(), backlog=9):
        assert listen_backlog("t", str(port)) == 9
