"""HTTP/2 over asyncio: bytes between the socket and H2Connection, events to HTTPStreams.

Every stream runs its app in its own task, concurrently with the others. Output from all
streams is batched into one write per event-loop turn. A stream that may not send (its flow
control window or the connection's is shut, or the socket is paused) waits on a future that
WINDOW_UPDATE, SETTINGS or resume_writing resolves: nothing polls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import typing
from collections import deque
from collections.abc import Awaitable

from caboose.asgi.http import HTTPStream
from caboose.core.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    Headers,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.limits import FloodGuard
from caboose.core.h2.settings import SettingCode
from caboose.core.headers import has_token
from caboose.errors import ErrorCode, LocalProtocolError
from caboose.transport.connection import ConnectionInfo, log_access, open_stream
from caboose.transport.flow import READY, GatedProtocol, close_lingering
from caboose.transport.state import ServerState
from caboose.transport.tasks import task_starter

logger = logging.getLogger("caboose.error")

_DEFAULTED = frozenset({b"server", b"date", b"content-length"})  # added unless the app set them
_EAGER_FLUSH = 64 * 1024  # bytes of body that are written at once instead of batched
SETTINGS_ACK_TIMEOUT = 10.0  # seconds the client has to acknowledge our SETTINGS (§6.5.3)
_BUSY = [(b"content-type", b"text/plain"), (b"content-length", b"20")]


def local_settings(state: ServerState) -> dict[int, int]:
    config = state.config
    return {
        SettingCode.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
        SettingCode.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
        SettingCode.MAX_FRAME_SIZE: config.http2_max_frame_size,
        SettingCode.INITIAL_WINDOW_SIZE: config.http2_stream_window,
    }


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


class HeldOutput:
    """A stream's output that may not go yet (its window or the connection's is shut, or
    the socket is paused), in order: body pieces, then the end or the trailers."""

    __slots__ = ("chunks", "end_stream", "since", "trailers", "waiter")

    def __init__(self, now: float) -> None:
        self.chunks: deque[memoryview] = deque()
        self.end_stream = False
        self.trailers: Headers | None = None
        self.since = now  # the last time any of it went out (the write timeout)
        self.waiter: asyncio.Future[None] | None = None  # a sender awaiting writable()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class H2Protocol(GatedProtocol):
    """One HTTP/2 connection (server role), from the client preface to GOAWAY."""

    def __init__(
        self, state: ServerState, upgrade: tuple[bytes, RequestReceived] | None = None
    ) -> None:
        """``upgrade``: the HTTP2-Settings payload and request of an ``Upgrade: h2c``."""
        super().__init__()
        self.state = state
        self.upgrade = upgrade
        config = state.config
        self.core = H2Connection(
            client_side=False,
            local_settings=local_settings(state),
            connection_window=config.http2_connection_window,
            flood=FloodGuard(
                max_resets=config.http2_max_resets,
                max_unflushed_acks=config.http2_max_pending_acks,
                max_empty_frames=config.http2_max_empty_frames,
            ),
        )
        self.loop = asyncio.get_running_loop()
        self.create_task = task_starter(self.loop)
        self.streams: dict[int, HTTPStream] = {}
        self.held: dict[int, HeldOutput] = {}
        self.transport: asyncio.Transport | None = None
        self.flush_pending = False
        self.closing = False  # GOAWAY sent or received: close once the streams are done
        self.lingering = False  # the close has begun (half-closed, draining the input)
        self.idle_since: float | None = None
        self.tick_timer: asyncio.TimerHandle | None = None
        self.settings_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        self.info = ConnectionInfo(transport, self.state)
        self.state.connections.add(self)
        self.core.initiate()
        if self.upgrade is not None:
            settings, request = self.upgrade
            self.core.accept_upgrade(settings)
            self._on_request(request)
        self._flush()
        self.idle_since = self.loop.time()
        self.tick_timer = self.loop.call_later(1.0, self._tick)
        self.settings_timer = self.loop.call_later(SETTINGS_ACK_TIMEOUT, self._settings_deadline)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # closing: read only so that the kernel has no cause to reset
        self._handle(self.core.receive_data(data))
        self._flush()

    def eof_received(self) -> bool | None:
        if not self.lingering:
            self._handle(self.core.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        for timer in (self.tick_timer, self.settings_timer):
            if timer is not None:
                timer.cancel()
        self._disconnect_all()
        self.write_gate.close()

    def pause_writing(self) -> None:
        """The client is not reading: stop reading it too, so it cannot make us queue
        unbounded PING/SETTINGS ACKs or responses (CVE-2019-9512, CVE-2019-9515)."""
        super().pause_writing()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        now = self.loop.time()
        for held in self.held.values():
            held.since = now  # the write timeout counts the window's time only
        self._release_all()

    # -- events from the core ----------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case RequestReceived():
                    self._on_request(event)
                case DataReceived():
                    self._on_data(event)
                case StreamEnded(stream_id=stream_id):
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.end_body()
                case TrailersReceived(stream_id=stream_id, headers=headers):
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.feed_trailers(headers)
                case WindowOpened(stream_id=stream_id):
                    self._window_opened(stream_id)
                case StreamReset(stream_id=stream_id):
                    self._on_reset(stream_id)
                case GoAwayReceived():
                    self.closing = True  # in-flight streams finish; no new ones come
                    self._close_if_done()
                case ConnectionTerminated():
                    self._terminate()

    def _on_request(self, event: RequestReceived) -> None:
        self.idle_since = None
        headers = event.headers
        if event.authority:
            for name, _ in headers:
                if name == b"host":
                    break
            else:  # HTTP/1.1 apps read the authority from Host (RFC 9113 §8.3.1)
                headers.insert(0, (b"host", event.authority))
        stream = open_stream(self, self.info, event, self.state)
        self.streams[event.stream_id] = stream
        state = self.state
        if state.shutting_down or state.over_capacity():
            stream.status = 503
            stream.disconnect()
            self.core.send_response(event.stream_id, 503, _BUSY)
            self.core.send_data(event.stream_id, b"Service Unavailable\n", end_stream=True)
            self._response_done(stream)
            return
        task = self.create_task(stream.run(state.app))
        if not task.done():
            stream.task = task
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    def _on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        padding = event.flow_controlled_length - len(event.data)
        if stream is None:
            # Nobody will read it (the response is done or the stream was reset): credit it
            # back at once, or the connection window would leak shut.
            self.core.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        if padding:
            self.core.acknowledge(event.stream_id, padding)  # padding is never "consumed"
        if event.data:
            stream.feed_body(event.data)

    def _on_reset(self, stream_id: int) -> None:
        """RST_STREAM (from the peer, or ours): the app hears http.disconnect, its sends raise,
        and the task is cancelled if it has not finished within the grace period."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
            stream.cancel_later(self.state.config.cancel_grace)
        self._drop_held(stream_id)
        self._close_if_done()

    def _terminate(self) -> None:
        """A connection error: the core queued GOAWAY with its code; make sure it arrives.

        Closing while the client's bytes are still unread makes the kernel send a TCP RST,
        which can destroy the GOAWAY in flight (seen by a flood test on a loaded machine; not
        reproduced on demand). So: send it, half-close, keep reading (and discarding) for a
        moment, then close: a lingering close, as HTTP servers commonly do.
        """
        self._disconnect_all()
        self._flush()
        self._close()

    def _disconnect_all(self) -> None:
        self.closing = True
        grace = self.state.config.cancel_grace
        for stream in self.streams.values():
            stream.disconnect()
            stream.cancel_later(grace)  # apps that ignore http.disconnect
        self.streams.clear()
        for stream_id in list(self.held):
            self._drop_held(stream_id)

    # -- StreamSink: what HTTPStream calls -----------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        self.core.send_informational(stream_id, status, headers)
        self._schedule_flush()

    def send_head(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool, trailers: bool
    ) -> None:
        self.core.send_response(stream_id, status, self._with_defaults(headers), end_stream)
        self._schedule_flush()
        stream = self.streams.get(stream_id)
        if end_stream and stream is not None:
            self._response_done(stream)

    def send_response(self, stream_id: int, status: int, headers: Headers, body: bytes) -> None:
        self.core.send_response(stream_id, status, self._with_defaults(headers, len(body)))
        self.send_data(stream_id, body, end_stream=True)

    def _with_defaults(self, headers: Headers, length: int = 0) -> Headers:
        """The app's fields plus Server and Date (RFC 9110 §6.6.1), and the length of a body
        given whole (also for HEAD, §9.3.2), unless the app set them."""
        own: set[bytes] | None = None
        for name, _ in headers:
            lower = name.lower()
            if lower in _DEFAULTED:
                own = own or set()
                own.add(lower)
        defaults = self.state.default_headers
        if own is None:  # the usual case: the app set none of them
            if length > 0:
                return [*headers, *defaults, (b"content-length", b"%d" % length)]
            return [*headers, *defaults] if defaults else headers
        added = [field for field in defaults if field[0] not in own]
        if length > 0 and b"content-length" not in own:
            added.append((b"content-length", b"%d" % length))
        return [*headers, *added] if added else headers

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        if stream_id not in self.streams:
            return  # reset meanwhile: the bridge tells the app through receive()
        if not data and not end_stream:
            return  # an empty DATA frame would carry nothing
        if (
            stream_id in self.held
            or self.write_gate.paused
            or len(data) > self.core.sendable(stream_id)
        ):
            self._hold(stream_id, data, end_stream)
            return
        self.core.send_data(stream_id, data, end_stream)
        if end_stream:
            self._response_done(self.streams[stream_id])
        if len(data) < _EAGER_FLUSH:
            self._schedule_flush()
        else:
            # A large body goes out now, so the transport can push back (pause_writing)
            # before more piles up behind it.
            self._flush()

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        held = self.held.get(stream_id)
        if held is not None:
            held.trailers = headers  # they follow the body still held
            return
        self.core.send_trailers(stream_id, headers)
        self._schedule_flush()
        self._response_done(self.streams[stream_id])

    def writable(self, stream_id: int) -> Awaitable[None]:
        if stream_id not in self.held and not self.write_gate.paused:
            return READY
        return self._until_writable(stream_id)

    async def _until_writable(self, stream_id: int) -> None:
        while stream_id in self.streams:
            held = self.held.get(stream_id)
            if held is not None:
                if held.waiter is None or held.waiter.done():
                    held.waiter = self.loop.create_future()
                await held.waiter
            elif self.write_gate.paused:
                await self.write_gate.wait()
            else:
                return

    # -- held output: what flow control or the socket does not let out yet --------------------

    def _hold(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        held = self.held.get(stream_id)
        if held is None:
            held = self.held[stream_id] = HeldOutput(self.loop.time())
            self._schedule_flush()  # what is queued ahead of this body (its head) goes out now
        held.chunks.append(memoryview(data))
        held.end_stream = end_stream
        self._release(stream_id, held)

    def _release(self, stream_id: int, held: HeldOutput) -> None:
        """Send what the windows allow of a stream's held output; finish it once all is out."""
        if self.write_gate.paused:
            return  # resume_writing releases it
        core = self.core
        chunks = held.chunks
        while chunks:
            chunk = chunks[0]
            room = core.sendable(stream_id)
            if len(chunk) > room:
                if room:
                    core.send_data(stream_id, bytes(chunk[:room]))
                    chunks[0] = chunk[room:]
                    held.since = self.loop.time()
                    self._schedule_flush()
                return
            chunks.popleft()
            end = held.end_stream and not chunks and held.trailers is None
            core.send_data(stream_id, bytes(chunk), end)
            held.since = self.loop.time()
        del self.held[stream_id]
        self._schedule_flush()
        held.wake()
        stream = self.streams.get(stream_id)
        if held.trailers is not None:
            core.send_trailers(stream_id, held.trailers)
        elif not held.end_stream:
            return
        if stream is not None:
            self._response_done(stream)

    def _release_all(self) -> None:
        for stream_id, held in list(self.held.items()):
            if self.held.get(stream_id) is held:
                self._release(stream_id, held)

    def _drop_held(self, stream_id: int) -> None:
        held = self.held.pop(stream_id, None)
        if held is not None:
            held.wake()  # its sender gives up: the stream is gone

    def _window_opened(self, stream_id: int) -> None:
        if stream_id == 0:
            self._release_all()
        else:
            held = self.held.get(stream_id)
            if held is not None:
                self._release(stream_id, held)

    def _reset_stalled(self) -> None:
        """Reset streams whose window stayed shut for --http2-write-timeout (a client that
        never credits us back would otherwise hold their output and their apps forever)."""
        if self.write_gate.paused:
            return
        timeout = self.state.config.http2_write_timeout
        now = self.loop.time()
        for stream_id, held in list(self.held.items()):
            if now - held.since >= timeout:
                logger.warning(
                    "HTTP/2 stream %d reset: the client's flow-control window stayed shut "
                    "for %.0f s",
                    stream_id,
                    timeout,
                )
                self.reset(stream_id)

    def consumed(self, stream_id: int, size: int) -> None:
        self.core.acknowledge(stream_id, size)
        self._schedule_flush()

    def reset(self, stream_id: int) -> None:
        """The app failed after its response began: RST_STREAM INTERNAL_ERROR (§8.1)."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
        self._drop_held(stream_id)
        with contextlib.suppress(LocalProtocolError):  # already closed on the wire
            self.core.reset_stream(stream_id, ErrorCode.INTERNAL_ERROR)
        self._schedule_flush()
        self._close_if_done()

    # -- stream and connection bookkeeping -----------------------------------------------------

    def _response_done(self, stream: HTTPStream) -> None:
        self.streams.pop(stream.stream_id, None)
        if self.state.config.access_log:
            log_access(stream)
        if not self.streams:
            self.idle_since = self.loop.time()
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.closing and not self.streams and self.transport is not None:
            self._flush()
            self._close()

    def _close(self) -> None:
        """Close lingering (flow.close_lingering): input that arrives meanwhile is dropped."""
        if self.transport is not None and not self.lingering:
            self.lingering = True
            close_lingering(self.transport, self.loop)

    def _schedule_flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_pending = False
        data = self.core.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    # -- timers --------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: refill the flood budgets, close an idle connection."""
        self.core.flood.refill()
        if self.held:
            self._reset_stalled()
        idle = self.idle_since
        if idle is not None and self.loop.time() - idle >= self.state.config.timeout_keep_alive:
            self.shutdown()
        if self.transport is not None and not self.transport.is_closing():
            self.tick_timer = self.loop.call_later(1.0, self._tick)

    def _settings_deadline(self) -> None:
        self._handle(self.core.settings_timeout())
        self._flush()

    def shutdown(self) -> None:
        """Graceful: GOAWAY with the last stream we will process, finish those, then close."""
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(LocalProtocolError):  # the connection already failed
                self._handle(self.core.goaway(ErrorCode.NO_ERROR))
            self.closing = True
            self._flush()
        self._close_if_done()
