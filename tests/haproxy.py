"""Debian's HAProxy in front of a test server: the configuration docs/deployment.md prints,
with this test's addresses put in, run in the foreground (``haproxy -f cfg -db``).

The frontend listens on a socket the test bound to 127.0.0.1:0 and hands over by file
descriptor (``bind fd@N``), so the port is known before HAProxy starts and no other process
can take it. Everything HAProxy reads or writes (its config, the certificate, its stderr)
lives in the test's folder, and it is stopped by the PID of the process we started.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.serving import ROOT, tool
from tests.tls import TestCertificate

DOCS = ROOT / "docs" / "deployment.md"


def documented_config() -> str:
    """The one ```haproxy block of docs/deployment.md, as printed there."""
    blocks = re.findall(r"^```haproxy\n(.*?)^```", DOCS.read_text(), re.S | re.M)
    assert len(blocks) == 1, f"{DOCS} should hold one haproxy block, not {len(blocks)}"
    return str(blocks[0])


def localise(config: str, *, listen_fd: int, pem: Path, upstream: int) -> str:
    """The documented config with the test's frontend socket, certificate and caboose port in
    place of ``:443``, ``/etc/haproxy/app.example.pem`` and ``127.0.0.1:8000``."""
    replacements = {
        "bind :443 ": f"bind fd@{listen_fd} ",
        "/etc/haproxy/app.example.pem": str(pem),
        "127.0.0.1:8000": f"127.0.0.1:{upstream}",
    }
    for documented, local in replacements.items():
        assert documented in config, f"the documented config no longer has {documented!r}"
        config = config.replace(documented, local)
    return config


@contextlib.contextmanager
def documented_proxy(
    folder: Path, upstream: int, certificate: TestCertificate
) -> Iterator[tuple[int, Path]]:
    """HAProxy with the documented config in front of caboose on ``upstream`` until the block
    ends; yields the port it listens on (TLS, ALPN h2 and http/1.1) and its stderr file."""
    folder.mkdir(parents=True, exist_ok=True)
    pem = folder / "app.pem"  # HAProxy's crt: the certificate and its key in one file
    pem.write_bytes(certificate.cert.read_bytes() + certificate.key.read_bytes())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))  # bound, not listening: HAProxy calls listen()
        fd = listener.fileno()
        config = localise(documented_config(), listen_fd=fd, pem=pem, upstream=upstream)
        with proxy(folder, config, listener) as port:
            yield port, folder / "haproxy.stderr"


@contextlib.contextmanager
def proxy(folder: Path, config: str, listener: socket.socket) -> Iterator[int]:
    """Run ``haproxy -f cfg -db`` with ``config`` until the block ends, ``listener`` (a bound
    socket its frontend names as ``fd@N``) passed on; yields the port once HAProxy accepts."""
    cfg = folder / "haproxy.cfg"
    cfg.write_text(config)
    errors = folder / "haproxy.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            [tool("haproxy"), "-f", str(cfg), "-db"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(listener.fileno(),),
        )
    port: int = listener.getsockname()[1]
    try:
        wait_for_port(port, process, errors)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], errors: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}: {errors.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"haproxy did not listen on 127.0.0.1:{port} within 10 s")
