"""Which protocol a connection speaks, decided in one place.

- TLS with ALPN ``h2`` (RFC 9113 §3.2): HTTP/2 at once.
- Cleartext with HTTP/2 enabled: the first bytes tell; the client preface (RFC 9113 §3.3,
  prior knowledge) means HTTP/2, anything else HTTP/1.1.
- An HTTP/1.1 request with ``Upgrade: h2c`` (RFC 7540 §3.2), when enabled: 101, then HTTP/2
  with that request as stream 1.
- An HTTP/1.1 request with ``Upgrade: websocket`` (RFC 6455 §4): a WebSocket session.
  (On HTTP/2, WebSocket is a stream of the HTTP/2 driver: RFC 8441's extended CONNECT.)

The drivers know nothing of each other: the HTTP/1.1 driver is given the upgrade handlers,
and each hand-over goes through ``hand_over``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import typing

from caboose.core.events import Headers, RequestReceived
from caboose.core.h2.frames import PREFACE
from caboose.core.headers import has_token
from caboose.core.ws_handshake import Refusal, read_offer
from caboose.transport.driver import FRESH_GRACE, Driver
from caboose.transport.http1 import H1Driver, UpgradeHandler
from caboose.transport.http2 import H2Driver
from caboose.transport.state import ServerState
from caboose.transport.websocket import H1WebSocket


class Negotiator(asyncio.Protocol):
    """A connection's first protocol: it picks the driver, then steps aside."""

    protocol = "negotiating"  # what the metrics call a connection that has not chosen yet

    def __init__(self, state: ServerState) -> None:
        # Made when the connection is accepted, before a TLS handshake: it counts from then,
        # so a shutdown waits for a handshake under way instead of cutting it (the client
        # was accepted, and would not retry). The wait for the handshake (or, in cleartext,
        # the first bytes) is no longer than an idle keep-alive connection's.
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.sniffed = b""
        self.draining = False  # the server began shutting down while we waited
        state.connections.add(self)
        delay = state.config.timeout_keep_alive
        self.timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            delay, self._give_up
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = typing.cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            h2 = ssl_object.selected_alpn_protocol() == "h2"
            self._choose(H2Driver(self.state) if h2 else self._http1())
        elif not self.state.config.http2:
            self._choose(self._http1())
        # else: HTTP/2 in cleartext; the first bytes tell (data_received)

    def data_received(self, data: bytes) -> None:
        """Hold the first bytes until they show whether this is HTTP/2's preface."""
        buffered = self.sniffed + data
        if PREFACE.startswith(buffered[: len(PREFACE)]) and len(buffered) < len(PREFACE):
            self.sniffed = buffered
            return
        h2 = buffered.startswith(PREFACE)
        self._choose(H2Driver(self.state) if h2 else self._http1(), buffered)

    def eof_received(self) -> bool | None:
        return None  # nothing was asked: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._step_aside()

    def shutdown(self) -> None:
        """Server shutdown: the client connected before the listener closed and its TLS
        handshake or first bytes are on their way; they get FRESH_GRACE to arrive (then the
        connection is served as its driver shuts down), or the connection closes without."""
        self.draining = True
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(FRESH_GRACE, self._give_up)

    def _choose(self, driver: H1Driver | H2Driver, data: bytes = b"") -> None:
        self._step_aside()
        assert self.transport is not None
        hand_over(self.transport, driver, data)
        if self.draining:
            # The server is stopping: the driver serves what comes within FRESH_GRACE (HTTP/1.1
            # one request, HTTP/2 the streams of the first read), then closes.
            driver.shutdown()

    def _give_up(self) -> None:
        """The first bytes took too long: close (nothing is owed)."""
        self._step_aside()
        if self.transport is not None:
            self.transport.close()

    def _step_aside(self) -> None:
        self.state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _http1(self) -> H1Driver:
        upgrades: dict[bytes, UpgradeHandler] = {}
        if self.state.config.h2c_upgrade:
            upgrades[b"h2c"] = upgrade_to_h2c
        if self.state.config.ws != "none":
            upgrades[b"websocket"] = upgrade_to_websocket
        return H1Driver(self.state, upgrades)


def hand_over(transport: asyncio.Transport, driver: asyncio.Protocol, data: bytes = b"") -> None:
    """Give the connection to ``driver``, with the bytes already read."""
    transport.set_protocol(driver)
    driver.connection_made(transport)
    if data:
        driver.data_received(data)


def upgrade_to_h2c(driver: H1Driver, event: RequestReceived) -> bool:
    """RFC 7540 §3.2: a bodiless first request with valid HTTP2-Settings switches to HTTP/2
    (101 from the core), and becomes stream 1, half-closed, with the facts read from it."""
    if event.stream_id != 1 or not event.end_stream:
        return False
    settings = h2c_upgrade_settings(event.headers)
    if settings is None or driver.transport is None:
        return False
    driver.core.switch_protocols(event.stream_id, b"h2c")
    driver.flush_output()
    leave(driver)
    request = dataclasses.replace(event, stream_id=1, http_version="2", upgrade=b"")
    hand_over(
        driver.transport,
        H2Driver(driver.state, upgrade=(settings, request)),
        driver.core.trailing_data(),
    )
    return True


def upgrade_to_websocket(driver: H1Driver, event: RequestReceived) -> bool:
    """RFC 6455 §4.2: a valid opening handshake goes to a WebSocket session, where the app
    accepts or denies it; an invalid one is answered here (400, or 426 naming version 13)."""
    offer = read_offer(event)
    if isinstance(offer, Refusal):
        headers, body = offer.response()
        driver.answer(event.stream_id, offer.status, headers, body)
        return True
    if driver.transport is None:
        return False
    leave(driver)
    H1WebSocket(driver.state, driver.info, driver.core, event, offer).start(driver.transport)
    return True


def leave(driver: Driver[typing.Any]) -> None:
    """The driver hands its connection on: it stops its timers and is no longer counted."""
    driver.stop_timers()
    driver.state.connections.discard(driver)


def h2c_upgrade_settings(headers: Headers) -> bytes | None:
    """The decoded HTTP2-Settings of a valid ``Upgrade: h2c`` request, else None.

    RFC 7540 §3.2: Upgrade names h2c, exactly one HTTP2-Settings field (base64url SETTINGS
    payload), and Connection lists both Upgrade and HTTP2-Settings.
    """
    upgrade = connection = b""
    settings: list[bytes] = []
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value
        elif name == b"connection":
            connection += b"," + value
        elif name == b"http2-settings":
            settings.append(value)
    if not has_token(upgrade, b"h2c") or len(settings) != 1:
        return None
    if not (has_token(connection, b"upgrade") and has_token(connection, b"http2-settings")):
        return None
    encoded = settings[0].strip()
    try:
        payload = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    except ValueError:
        return None
    return payload if len(payload) % 6 == 0 else None
