"""A real server process driven from outside: its log, port, children (from /proc), stop.

Every process is started by the test and stopped by its PID in a ``finally``; a supervisor's
workers are found as its children in /proc, and any left over are killed by PID too.
``caboose_process`` runs ``python -m caboose``; other servers (gunicorn's arbiter) go through
``supervise`` with a subclass of ``Supervised`` that knows how they log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from tests.h2peer import settle

ROOT = Path(__file__).resolve().parents[1]


class Supervised:
    """A process whose log (its one piped stream) a thread reads into ``lines``."""

    # The line that says the port the server bound (127.0.0.1:0 chose it).
    LISTENING = r"running on https?://127\.0\.0\.1:(\d+)"

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._drained = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stream = self.process.stderr if self.process.stderr is not None else self.process.stdout
        assert stream is not None
        for line in stream:
            self.lines.append(line.rstrip())

    def log(self) -> str:
        self._drain()
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        """How many log lines contain ``text``."""
        self._drain()
        return sum(text in line for line in list(self.lines))

    def _drain(self) -> None:
        """Once the process has exited, its last lines may still be in the pipe, unread by the
        reader thread: wait for them (up to the pipe's end, which a worker left alive would
        hold open: then once, for a second)."""
        if not self._drained and self.process.poll() is not None:
            self._drained = True
            self.reader.join(1)

    @property
    def port(self) -> int:
        assert settle(lambda: re.search(self.LISTENING, self.log()) is not None, 15), self.log()
        found = re.search(self.LISTENING, self.log())
        assert found, self.log()
        return int(found.group(1))

    def children(self) -> dict[int, str]:
        """The process's live children, from /proc: PID -> command line."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_text()
            except OSError:
                continue
        return found

    def workers(self) -> set[int]:
        """The supervisor's live worker processes (its spawned children)."""
        return {pid for pid, command in self.children().items() if "spawn_main" in command}

    def ready(self, count: int) -> set[int]:
        """Wait until ``count`` workers serve (the supervisor says so); their PIDs."""

        def serving() -> bool:
            pids = self.workers()
            return len(pids) == count and all(f"Worker [{p}] serving" in self.log() for p in pids)

        assert settle(serving, 15), (self.workers(), self.log())
        return self.workers()

    @staticmethod
    def _answering(port: int) -> set[int]:
        try:
            return {get(port)}
        except OSError:
            return set()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """As Ctrl-C in a terminal, or systemd's KillMode=control-group: every process."""
        os.killpg(self.process.pid, signum)


def fetch(port: int, path: str = "/", timeout: float = 5.0) -> bytes:
    """One HTTP/1.1 GET on a new connection; the body of its 200 response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data
    return body


class InFlight:
    def __init__(self, sock: socket.socket, head: bytes, body: bytes) -> None:
        self.sock, self.head, self.body = sock, head, body

    def rest(self) -> bytes:
        """The body, read until the server closes the connection."""
        while chunk := self.sock.recv(65536):
            self.body += chunk
        return self.body


@contextmanager
def in_flight(port: int, path: str, timeout: float = 10.0) -> Iterator[InFlight]:
    """A GET whose response head (with a first part of the body) has arrived: the app is
    serving it now. Signalling the server after this, not after a guessed sleep, keeps a busy
    machine from racing the request."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the response head: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        yield InFlight(sock, head, body)


def get(port: int, path: str = "/", timeout: float = 5.0) -> int:
    """One request to an app that answers with its PID: the PID of the worker that answered."""
    return int(fetch(port, path, timeout))


S = TypeVar("S", bound=Supervised)


@contextmanager
def supervise(
    kind: type[S],
    command: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    *,
    merge_stdout: bool = False,
    pass_fds: tuple[int, ...] = (),
) -> Iterator[S]:
    """``command`` in ``cwd``, its stderr (and stdout if ``merge_stdout``) as the log; stopped
    when done: SIGTERM to its PID, SIGKILL after 15 s, then SIGKILL to any child left over."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE if merge_stdout else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if merge_stdout else subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
        start_new_session=True,  # a group of its own, which a test may signal as a whole
        pass_fds=pass_fds,
    )
    supervised = kind(process)
    try:
        yield supervised
    finally:
        children = supervised.children()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pid in children:  # none should be left; if one is, it goes too
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        supervised.reader.join(5)  # the whole log, for asserts after the block


@contextmanager
def caboose_process(
    cwd: Path, *args: str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> Iterator[Supervised]:
    """``python -m caboose *args`` in ``cwd``, stopped (SIGTERM, then SIGKILL) when done."""
    command = [sys.executable, "-m", "caboose", *args]
    with supervise(Supervised, command, cwd, env, pass_fds=pass_fds) as supervised:
        yield supervised


def until(condition: Callable[[], bool], timeout: float = 15) -> bool:
    return settle(condition, timeout)
