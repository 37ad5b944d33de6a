"""The ASGI ``lifespan`` protocol: startup and shutdown around the server's life."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from caboose.asgi.http import ASGIApp, Message

logger = logging.getLogger("caboose.error")


class LifespanFailure(RuntimeError):
    """The app reported startup/shutdown failure (its message is the exception's)."""


class Lifespan:
    """Runs the app's lifespan scope in a task and relays startup/shutdown.

    ``mode``: ``on`` requires support (failure to run is fatal), ``auto`` tolerates an app
    that raises on the lifespan scope (it just has none), ``off`` never calls the app.
    """

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None
        self._unsupported = False

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self._task = asyncio.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._wait(self._startup_done)
        if self._failure is not None:
            raise LifespanFailure(self._failure)

    async def shutdown(self) -> None:
        if self.mode == "off" or self._unsupported or self._task is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._wait(self._shutdown_done)
        if self._failure is not None:
            raise LifespanFailure(self._failure)

    async def _wait(self, event: asyncio.Event) -> None:
        assert self._task is not None
        done_waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait({done_waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        done_waiter.cancel()

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._startup_done.is_set() or self.mode == "on":
                self._failure = self._failure or f"lifespan failed: {exc!r}"
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            else:
                self._unsupported = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = message.get("message") or "application startup failed"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = message.get("message") or "application shutdown failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
