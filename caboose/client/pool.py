"""Connections kept per origin: one shared HTTP/2 connection, or a few HTTP/1.1 ones.

An origin that may speak HTTP/2 (TLS with h2 offered, or h2c by prior knowledge) gets one
connection at a time while it is being made: if ALPN picks h2, every exchange shares it;
if not, further HTTP/1.1 connections follow, up to ``max_connections`` per origin. An
HTTP/1.1 connection serves one exchange at a time and goes back to the idle list after it,
where it expires after ``keepalive_expiry`` seconds. Callers beyond the limit wait in FIFO
order for a released connection or for room to open one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from caboose.client.connect import Origin
from caboose.client.driver import ClientDriver
from caboose.client.errors import PoolTimeout
from caboose.client.http2 import H2ClientDriver


class _OriginPool:
    __slots__ = ("connecting", "count", "h2", "idle", "waiters")

    def __init__(self) -> None:
        self.h2: H2ClientDriver | None = None
        self.idle: list[tuple[ClientDriver, asyncio.TimerHandle | None]] = []
        self.count = 0  # connections open or being opened
        self.connecting: asyncio.Future[ClientDriver] | None = None  # may become HTTP/2
        self.waiters: deque[asyncio.Future[ClientDriver | None]] = deque()


class Pool:
    def __init__(
        self,
        connect: Callable[[Origin], Awaitable[ClientDriver]],
        *,
        may_multiplex: Callable[[Origin], bool],
        max_connections: int,
        keepalive_expiry: float | None,
    ) -> None:
        self._connect = connect
        self._may_multiplex = may_multiplex
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._origins: dict[Origin, _OriginPool] = {}
        self._drivers: set[ClientDriver] = set()

    async def acquire(self, origin: Origin, timeout: float | None) -> ClientDriver:
        """A connection that can start an exchange now (HTTP/2: may still queue it). Waiting
        for one to be released takes at most ``timeout``; connecting has its own."""
        pool = self._origins.get(origin)
        if pool is None:
            pool = self._origins[origin] = _OriginPool()
        while True:
            if pool.h2 is not None and pool.h2.usable:
                return pool.h2
            while pool.idle:
                driver, timer = pool.idle.pop()
                if timer is not None:
                    timer.cancel()
                if driver.usable:
                    return driver
            if pool.connecting is not None:
                await asyncio.shield(pool.connecting)  # its failure is ours too
                continue
            if pool.count < self._max and not pool.waiters:
                return await self._open(origin, pool)
            waiter: asyncio.Future[ClientDriver | None] = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    driver_or_room = await waiter
            except (asyncio.CancelledError, TimeoutError) as exc:
                if waiter.done() and not waiter.cancelled():
                    self._pass_on(pool, waiter.result())
                else:
                    pool.waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise PoolTimeout(
                        f"no connection to {origin.authority} free within {timeout} s"
                    ) from None
                raise
            if driver_or_room is not None:
                return driver_or_room
            return await self._open(origin, pool)  # room to open was handed to us

    async def _open(self, origin: Origin, pool: _OriginPool) -> ClientDriver:
        pool.count += 1
        pending: asyncio.Future[ClientDriver] | None = None
        if self._may_multiplex(origin):
            pending = pool.connecting = asyncio.get_running_loop().create_future()
        try:
            driver = await self._connect(origin)
        except BaseException as exc:
            pool.count -= 1
            self._hand_room(pool)
            if pending is not None:
                pool.connecting = None
                if isinstance(exc, Exception):
                    pending.set_exception(exc)
                    pending.exception()
                else:
                    pending.cancel()
            raise
        self._drivers.add(driver)
        driver.on_released = lambda released: self._release(pool, released)
        driver.on_closed = lambda closed: self._closed(pool, closed)
        if isinstance(driver, H2ClientDriver):
            pool.h2 = driver
            self._wake_all(pool, driver)
        if pending is not None:
            pool.connecting = None
            pending.set_result(driver)
        return driver

    def _release(self, pool: _OriginPool, driver: ClientDriver) -> None:
        """An HTTP/1.1 connection finished an exchange and may serve another."""
        self._pass_on(pool, driver)

    def _pass_on(self, pool: _OriginPool, driver: ClientDriver | None) -> None:
        if driver is None:
            self._hand_room(pool)
            return
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(driver)
                return
        timer = None
        if self._expiry is not None:
            timer = asyncio.get_running_loop().call_later(self._expiry, driver.close)
        pool.idle.append((driver, timer))

    def _hand_room(self, pool: _OriginPool) -> None:
        """A connection closed, or failed to open: the first waiter may open one."""
        while pool.waiters and pool.count < self._max:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self, pool: _OriginPool, driver: ClientDriver) -> None:
        """An HTTP/2 connection is up: every waiter shares it."""
        waiters, pool.waiters = pool.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(driver)

    def _closed(self, pool: _OriginPool, driver: ClientDriver) -> None:
        self._drivers.discard(driver)
        pool.count -= 1
        if pool.h2 is driver:
            pool.h2 = None
        for index, (idle, timer) in enumerate(pool.idle):
            if idle is driver:
                if timer is not None:
                    timer.cancel()
                del pool.idle[index]
                break
        self._hand_room(pool)

    def close(self) -> None:
        for driver in list(self._drivers):
            driver.close()
        self._origins.clear()
