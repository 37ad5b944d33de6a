"""Ports for the servers that must be told one in advance (nginx, nghttpd, the grpcio server,
caboose given --port), safe when several pytest workers start servers at once.

The usual trick, bind port 0 and close, hands out a port from the kernel's ephemeral range,
where any other socket may take it before the tool binds it: another worker's server bound to
port 0, or the source port of any outgoing connection. The tool then fails to bind or, worse,
the test talks to someone else's server. So the ports come from below that range, where the
kernel never picks one by itself, and each xdist worker draws from a block of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

LOWEST = 20000


def _ephemeral_start() -> int:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    return int(text.split()[0])


def _block() -> list[int]:
    """This worker's ports (gw0 the first share of LOWEST up to the ephemeral range, gw1 the
    next, ...; without xdist, all of them), from a random place in the block, so that two test
    runs on one machine seldom draw the same ports."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = min(1000, (_ephemeral_start() - LOWEST) // workers)
    assert size >= 50, f"too few ports below the ephemeral range for {workers} workers"
    first, start = LOWEST + index * size, random.randrange(size)
    return [first + (start + i) % size for i in range(size)]


_BLOCK = _block()
_NEXT = itertools.cycle(_BLOCK)


def free_port() -> int:
    """A loopback port that nothing holds now and that this worker has not handed out lately."""
    for _ in range(len(_BLOCK)):
        port = next(_NEXT)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # held by a real service or by another test run
                continue
            return port
    raise RuntimeError(f"no free port among this worker's {len(_BLOCK)}")


class PortTaken(RuntimeError):
    """The server could not bind the port it was given: someone took it after the probe."""


T = TypeVar("T")
TRIES = 3


@contextlib.contextmanager
def on_a_free_port(start: Callable[[int], contextlib.AbstractContextManager[T]]) -> Iterator[T]:
    """``start(port)`` on a free port, again on another one if it raises PortTaken (another
    test run on this machine drew the same port between our probe and the server's bind)."""
    with contextlib.ExitStack() as stack:
        for attempt in range(1, TRIES + 1):
            try:
                value = stack.enter_context(start(free_port()))
            except PortTaken:
                if attempt == TRIES:
                    raise
            else:
                break
        yield value


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket that listens on 127.0.0.1:``port``. A connect
    would also be answered by whoever else listens there; this asks the kernel whose it is."""
    sockets = _listeners(port)
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return True
    return False


def _listeners(port: int) -> set[str]:
    """The ``socket:[inode]`` names of the TCP sockets in LISTEN on 127.0.0.1:port."""
    local = f"0100007F:{port:04X}"  # /proc/net/tcp: the address in host (little-endian) order
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: TCP_LISTEN
            found.add(f"socket:[{fields[9]}]")
    return found
