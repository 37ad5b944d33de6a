"""Application tasks start eagerly on Python 3.12+ (transport/tasks.py), and stay real tasks.

Eager start runs the app inside data_received until it first suspends: a response that
needs no waiting is written before data_received returns, without a trip through the loop.
anyio (and so Starlette) asks for the current task in that first step, so it must be there.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import h2.config
import h2.connection
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from caboose.config import Config
from caboose.transport.http1 import H1Driver
from caboose.transport.http2 import H2Driver
from caboose.transport.state import ServerState
from tests.serving import running
from tests.transport.test_backpressure import FakeTransport

EAGER = sys.version_info >= (3, 12)


def _app(seen: list[asyncio.Task[Any] | None]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(asyncio.current_task())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"now"})

    return app


@dataclass
class Outcome:
    ran_at_once: bool  # the app had run before data_received returned
    written_at_once: bytes  # what was written by then
    written: bytes  # what was written after a few turns of the loop
    tasks: list[asyncio.Task[Any] | None]  # current_task() as the app saw it


def _drive(driver_class: Any, request: bytes) -> Outcome:
    seen: list[asyncio.Task[Any] | None] = []

    async def scenario() -> Outcome:
        driver = driver_class(ServerState(config=Config(), app=_app(seen)))
        transport = FakeTransport()
        driver.connection_made(transport)
        transport.written.clear()  # an HTTP/2 driver's SETTINGS
        driver.data_received(request)
        ran_at_once, at_once = bool(seen), bytes(transport.written)
        for _ in range(5):
            await asyncio.sleep(0)
        return Outcome(ran_at_once, at_once, bytes(transport.written), seen)

    return asyncio.run(scenario())


H1_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_http1_app_runs_inside_data_received_on_312_and_later() -> None:
    outcome = _drive(H1Driver, H1_GET)
    assert outcome.written.startswith(b"HTTP/1.1 200 ") and outcome.written.endswith(b"now")
    assert len(outcome.tasks) == 1 and isinstance(outcome.tasks[0], asyncio.Task)
    assert outcome.ran_at_once is EAGER  # 3.11: the task runs on the loop's next turn
    # Eager: the whole response was written before data_received returned.
    assert (outcome.written_at_once == outcome.written) is EAGER


def _h2_get() -> bytes:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, fields, end_stream=True)
    return client.data_to_send()


def test_http2_app_runs_inside_data_received_on_312_and_later() -> None:
    outcome = _drive(H2Driver, _h2_get())
    assert outcome.written.endswith(b"now")  # HEADERS then DATA on stream 1
    assert len(outcome.tasks) == 1 and isinstance(outcome.tasks[0], asyncio.Task)
    assert outcome.ran_at_once is EAGER  # the writes themselves wait for the batched flush


def _starlette() -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        # anyio's task bookkeeping needs current_task() in the first step of the task.
        task = anyio.get_current_task()
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.sleep, 0)
        return PlainTextResponse(f"task {task.name != ''}")

    return Starlette(routes=[Route("/", home)])


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2c"])
def test_starlette_and_anyio_see_their_task(http2: bool) -> None:
    with running(_starlette()) as server, httpx.Client(http1=not http2, http2=http2) as client:
        response = client.get(f"http://127.0.0.1:{server.port}/")
        assert response.status_code == 200
        assert response.text == "task True"
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


# -- HTTP/2: the apps of one read start once the whole read is handled ------------------------


def _h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    return client


def _fields(path: str, method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")]


def test_http2_apps_of_one_read_start_after_every_frame_of_it() -> None:
    """A POST with its body and a GET in one read: both streams are open and the body is in
    before either app starts, so (3.12+) both answer inside data_received, in one write."""
    client = _h2_client()
    client.send_headers(1, _fields("/post", "POST"))
    client.send_data(1, b"payload", end_stream=True)
    client.send_headers(3, _fields("/get"), end_stream=True)
    read = client.data_to_send()
    open_at_start: list[int] = []
    bodies: list[bytes] = []
    drivers: list[H2Driver] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        open_at_start.append(len(drivers[0].streams))
        message = await receive()
        bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done " + scope["path"].encode()})

    async def scenario() -> bytes:
        driver = H2Driver(ServerState(config=Config(), app=app))
        drivers.append(driver)
        transport = FakeTransport()
        driver.connection_made(transport)
        transport.written.clear()  # our SETTINGS
        driver.data_received(read)
        at_once = bytes(transport.written)
        for _ in range(5):
            await asyncio.sleep(0)
        driver.connection_lost(None)
        return at_once

    at_once = asyncio.run(scenario())
    assert open_at_start[0] == 2  # stream 3's HEADERS was handled before stream 1's app ran
    assert bodies == [b"payload", b""]
    if EAGER:  # no app waited: both responses left before data_received returned
        assert b"done /post" in at_once and b"done /get" in at_once


def test_http2_stream_reset_in_its_opening_read_reaches_the_app_and_the_grace_cancels_it() -> None:
    """HEADERS and RST_STREAM in one read: the app, started after the read, hears
    http.disconnect at once, and is cancelled once --cancel-grace has passed."""
    client = _h2_client()
    client.send_headers(1, _fields("/slow"), end_stream=True)
    client.reset_stream(1)
    read = client.data_to_send()
    heard: list[Any] = []
    cancelled = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        heard.append(await receive())
        try:
            await asyncio.sleep(30)  # ignores the disconnect
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        driver = H2Driver(ServerState(config=Config(cancel_grace=0.05), app=app))
        driver.connection_made(FakeTransport())
        driver.data_received(read)
        await asyncio.wait_for(cancelled.wait(), 2.0)
        driver.connection_lost(None)

    asyncio.run(scenario())
    assert heard == [{"type": "http.disconnect"}]
