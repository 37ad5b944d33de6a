"""The listening sockets, bound once: by the server itself, or by the supervisor for its
workers, which then all accept from the same sockets (the kernel hands each connection to
one of them, and a worker that stops leaves the sockets open for the others)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from caboose.config import Config
from caboose.errors import ConfigError


class BindError(ConfigError):
    """A socket could not be bound; the message says where and why, in one line."""


def bind(config: Config) -> list[socket.socket]:
    """The sockets of ``--fd``, ``--uds`` or ``--host``/``--port``, listening."""
    if config.fd is not None:
        return [_from_fd(config.fd)]  # listening already; the server applies --backlog
    if config.uds is not None:
        return [_unix(config.uds, config.backlog)]
    return _tcp(config.host, config.port, config.backlog)


def _from_fd(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    except OSError as exc:
        raise BindError(f"cannot use fd {fd}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _unix(path: str, backlog: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)  # as uvicorn: any local user may connect; the folder decides
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(_message(path, exc)) from None
    sock.setblocking(False)
    return sock


def _tcp(host: str, port: int, backlog: int) -> list[socket.socket]:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"cannot bind to {host}:{port}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    for family, kind, proto, _, address in infos:
        if (family, address[0]) in seen:
            continue
        seen.add((family, address[0]))
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and sockets:  # one free port for every address of the host
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            for bound in sockets:
                bound.close()
            raise BindError(_message(f"{host}:{port}", exc)) from None
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _message(where: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot bind to {where}: address already in use"
    return f"cannot bind to {where}: {exc.strerror or exc}"


def describe(config: Config, sock: socket.socket) -> str:
    """Where a socket listens, and which protocols it serves."""
    scheme = "https" if config.is_tls else "http"
    name = sock.getsockname()
    if sock.family == socket.AF_INET6:
        where = f"{scheme}://[{name[0]}]:{name[1]}"
    elif sock.family == socket.AF_INET:
        where = f"{scheme}://{name[0]}:{name[1]}"
    else:
        where = f"unix socket {name}"
    protocols = ["HTTP/1.1"]
    if config.http2:
        protocols.append("h2 over TLS" if config.is_tls else "h2c")
    return f"{where} ({', '.join(protocols)})"
