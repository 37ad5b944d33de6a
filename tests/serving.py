"""Run a real caboose server on 127.0.0.1:0 in a thread, and talk to it with raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caboose.config import Config
from caboose.server import Server, loop_factory

ROOT = Path(__file__).resolve().parents[1]  # the repository


@contextlib.contextmanager
def running(app: Any, **options: Any) -> Iterator[Server]:
    """Serve ``app`` until the block ends; the server is stopped by its handle. The loop is
    asyncio's unless ``loop`` is given (as caboose's own --loop: "uvloop", "auto")."""
    chosen = loop_factory(options["loop"]) if "loop" in options else asyncio.new_event_loop
    options.setdefault("port", 0)
    options.setdefault("lifespan", "off")
    options.setdefault("access_log", False)
    options.setdefault("timeout_graceful_shutdown", 3.0)
    server = Server(app, Config(**options))
    failure: list[BaseException] = []

    def target() -> None:
        try:
            with asyncio.Runner(loop_factory=chosen) as runner:
                runner.run(server.serve())
        except BaseException as exc:
            failure.append(exc)
            server.started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    server.started.wait(10)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        server.request_exit()
        thread.join(10)
        assert not thread.is_alive(), "server did not stop"


def url(server: Server, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def exchange(server: Server, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection (or timeout)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """Read one response with a Content-Length body from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def tool(name: str) -> str:
    """Path of a Debian tool the tests need; `make test` installs them, so absence fails."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make test`, which installs it")
    return path


def run_tool(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool(args[0]), *args[1:]], capture_output=True, timeout=timeout)
