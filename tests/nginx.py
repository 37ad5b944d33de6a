"""Debian's nginx as a reverse proxy (gRPC or HTTP) in front of a test server, with a private
prefix.

Everything nginx writes (pid, logs, temp files) lives in a temporary folder; it listens on
127.0.0.1 only and is stopped by the PID of the process we started.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.ports import PortTaken, listening, on_a_free_port
from tests.serving import tool

CONFIG = """
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    client_max_body_size 0;
    # nginx ends a client connection after 1,000 requests by default (GOAWAY); a gRPC channel
    # lives longer, and grpclib fails the call in flight instead of retrying it.
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} {listen};
        location / {{
            {location}
        }}
    }}
}}
"""


GRPC = "grpc_pass {upstream}; grpc_read_timeout 60s; grpc_send_timeout 60s;"


def grpc_proxy(prefix: Path, upstream: str) -> contextlib.AbstractContextManager[int]:
    """Run nginx with ``grpc_pass upstream`` (``grpc://127.0.0.1:PORT`` or ``grpcs://...``)
    until the block ends; yields the port it listens on (h2c)."""
    return proxy(prefix, GRPC.format(upstream=upstream), http2=True)


def proxy(
    prefix: Path, location: str, *, http2: bool = False
) -> contextlib.AbstractContextManager[int]:
    """Run nginx with ``location`` as the body of its ``location /`` until the block ends;
    yields the port it listens on (h2c when ``http2``, else HTTP/1.1)."""
    return on_a_free_port(lambda port: _proxy(prefix, location, port, http2))


@contextlib.contextmanager
def _proxy(prefix: Path, location: str, port: int, http2: bool) -> Iterator[int]:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").chmod(0o777)  # the worker may run as an unprivileged user
    config = prefix / "nginx.conf"
    listen = "http2" if http2 else ""
    config.write_text(CONFIG.format(prefix=prefix, port=port, listen=listen, location=location))
    args = [tool("nginx"), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process, prefix / "error.log")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = log.read_text() if log.exists() else ""
            if "Address already in use" in errors:
                raise PortTaken(errors)
            raise RuntimeError(f"nginx exited with {process.returncode}: {errors}")
        if listening(process.pid, port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port} within 10 s")
