"""HTTP/2 over asyncio: the driver's hooks for H2Connection, every stream concurrent.

Every stream runs its app in its own task. Output from all streams is batched into one write
per event-loop turn. What a stream may not send yet (its flow-control window or the
connection's is shut, or the socket is paused) is held, in order, and released by
WINDOW_UPDATE, SETTINGS or resume_writing: nothing polls, and nothing handed over is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable

from caboose.core.events import AppHeaders, DataReceived, RequestReceived
from caboose.core.h2.connection import H2Connection
from caboose.core.h2.limits import FloodGuard
from caboose.core.h2.settings import SettingCode
from caboose.core.ws_handshake import Refusal, read_offer
from caboose.errors import ErrorCode, LocalProtocolError
from caboose.transport.driver import FRESH_GRACE, Driver, Exchange
from caboose.transport.flow import READY
from caboose.transport.state import ServerState
from caboose.transport.websocket import H2WebSocket

logger = logging.getLogger("caboose.error")

_DEFAULTED = frozenset({b"server", b"date", b"content-length"})  # added unless the app set them
# Body bytes queued since the last write at which the next body message is written at once
# rather than when the loop turns: a streaming app that never suspends must meet the
# transport's push-back (pause_writing) well before its whole body is queued. Not one 64 KiB
# message per write, though: on loopback each write wakes the reader, and the kernel time of
# those wake-ups doubled the sender's cost of a 100 MiB stream (benchmarks, scale-ttfb-h2).
_EAGER_FLUSH = 1024 * 1024
SETTINGS_ACK_TIMEOUT = 10.0  # seconds the client has to acknowledge our SETTINGS (§6.5.3)


def local_settings(state: ServerState) -> dict[int, int]:
    config = state.config
    settings: dict[int, int] = {
        SettingCode.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
        SettingCode.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
        SettingCode.MAX_FRAME_SIZE: config.http2_max_frame_size,
        SettingCode.INITIAL_WINDOW_SIZE: config.http2_stream_window,
    }
    if config.ws != "none":
        settings[SettingCode.ENABLE_CONNECT_PROTOCOL] = 1  # WebSocket over HTTP/2 (RFC 8441 §3)
    return settings


class HeldOutput:
    """A stream's output that may not go yet (its window or the connection's is shut, or
    the socket is paused), in order: body pieces, then the end or the trailers."""

    __slots__ = ("chunks", "end_stream", "since", "trailers", "waiter")

    def __init__(self, now: float) -> None:
        self.chunks: deque[memoryview] = deque()
        self.end_stream = False
        self.trailers: AppHeaders | None = None
        self.since = now  # the last time any of it went out (the write timeout)
        self.waiter: asyncio.Future[None] | None = None  # a sender awaiting writable()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class H2Driver(Driver[H2Connection]):
    """One HTTP/2 connection (server role), from the client preface to GOAWAY."""

    protocol = "HTTP/2"

    def __init__(
        self, state: ServerState, upgrade: tuple[bytes, RequestReceived] | None = None
    ) -> None:
        """``upgrade``: the HTTP2-Settings payload and request of an ``Upgrade: h2c``."""
        super().__init__(state)
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
        self.held: dict[int, HeldOutput] = {}
        self.admitted: list[Exchange] = []  # streams of this read whose apps start after it
        self.flush_pending = False
        self.unflushed = 0  # bytes of body queued in the core since the last flush
        self.closing = False  # GOAWAY sent or received: close once the streams are done
        self.idle_since: float | None = None
        self.tick_timer: asyncio.TimerHandle | None = None
        self.settings_timer: asyncio.TimerHandle | None = None
        self.fresh = True  # no request has arrived yet
        self.fresh_timer: asyncio.TimerHandle | None = None  # shut down while fresh

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.core.initiate()
        if self.upgrade is not None:
            settings, request = self.upgrade
            self.core.accept_upgrade(settings)
            self.on_request(request)
            self._start_admitted()
        self._flush()
        self.idle_since = self.loop.time()
        self.tick_timer = self.loop.call_later(1.0, self._tick)
        self.settings_timer = self.loop.call_later(SETTINGS_ACK_TIMEOUT, self._settings_deadline)

    def received(self) -> None:
        self._start_admitted()
        if self.fresh_timer is not None and not self.fresh:
            self._goaway()  # shut down while fresh: these streams are served, no more
        self._flush()

    def stop_timers(self) -> None:
        for timer in (self.tick_timer, self.settings_timer, self.fresh_timer):
            if timer is not None:
                timer.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        super().connection_lost(exc)
        if self.state.metrics is not None:
            self.state.metrics.h2_closed(self.core)
        for stream_id in list(self.held):
            self._drop_held(stream_id)

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

    # -- hooks of the driver -------------------------------------------------------------------

    def admit(self, stream: Exchange) -> None:
        """The stream's app starts once every frame of this read is handled: one read
        often carries many requests (h2load -m10 sends ten HEADERS at once), and parsing all
        of them, then running all their apps, is faster than alternating the two; a body that
        came in the same read is already there for the app's first receive()."""
        self.admitted.append(stream)

    def _start_admitted(self) -> None:
        admitted = self.admitted
        if admitted:
            self.admitted = []
            streams = self.streams
            for stream in admitted:
                gone = stream.stream_id not in streams  # reset, or the connection ended
                self.run(stream)
                if gone:  # it heard the disconnect; the grace period starts with its task
                    stream.cancel_later(self.state.config.cancel_grace)

    def on_request(self, event: RequestReceived) -> None:
        self.idle_since = None
        self.fresh = False
        if event.authority:
            headers = event.headers
            for name, _ in headers:
                if name == b"host":
                    break
            else:  # HTTP/1.1 apps read the authority from Host (RFC 9113 §8.3.1)
                headers.insert(0, (b"host", event.authority))
        if event.protocol:
            self._extended_connect(event)
        else:
            super().on_request(event)

    def _extended_connect(self, event: RequestReceived) -> None:
        """RFC 8441 §4: a CONNECT with :protocol. ``websocket`` opens a WebSocket on this
        stream (the app accepts with a 200 or denies); other protocols are not served."""
        stream_id = event.stream_id
        if event.protocol != b"websocket":
            self._refuse(stream_id, Refusal(501, "unsupported :protocol (RFC 8441 §4)"))
            return
        offer = read_offer(event)
        if isinstance(offer, Refusal):
            self._refuse(stream_id, offer)
            return
        socket = H2WebSocket(self, self.info, event, offer)
        self.streams[stream_id] = socket
        self.run(socket)

    def _refuse(self, stream_id: int, refusal: Refusal) -> None:
        fields, body = refusal.response()
        self.core.send_head(stream_id, refusal.status, self._with_defaults(fields, len(body)))
        self.core.send_data(stream_id, body, True)
        self._schedule_flush()

    def on_data(self, event: DataReceived) -> None:
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

    def on_window(self, stream_id: int) -> None:
        if stream_id == 0:
            self._release_all()
        else:
            held = self.held.get(stream_id)
            if held is not None:
                self._release(stream_id, held)

    def on_reset(self, stream_id: int) -> None:
        """RST_STREAM (from the peer, or ours): the app hears http.disconnect, its sends raise,
        and the task is cancelled if it has not finished within the grace period."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
            stream.cancel_later(self.state.config.cancel_grace)
            self.log_unfinished(stream, "reset")
        self._drop_held(stream_id)
        self._close_if_done()

    def on_goaway(self) -> None:
        self.closing = True  # in-flight streams finish; no new ones come
        self._close_if_done()

    def on_terminated(self, outcome: str) -> None:
        """A connection error: the core queued GOAWAY with its code; make sure it arrives
        (the lingering close: a TCP RST from unread input must not destroy the GOAWAY)."""
        self.closing = True
        self.disconnect_all(outcome)
        for stream_id in list(self.held):
            self._drop_held(stream_id)
        self._flush()
        self.close()

    def after_response(self) -> None:
        if not self.streams:
            self.idle_since = self.loop.time()
        self._close_if_done()

    # -- StreamSink: what HTTPStream calls -----------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: AppHeaders) -> None:
        self.core.send_informational(stream_id, status, headers)
        self._schedule_flush()

    def send_head(
        self, stream_id: int, status: int, headers: AppHeaders, *, end_stream: bool, trailers: bool
    ) -> None:
        self.core.send_head(stream_id, status, self._with_defaults(headers), end_stream=end_stream)
        self._schedule_flush()
        stream = self.streams.get(stream_id)
        if end_stream and stream is not None:
            self.response_done(stream)

    def send_response(self, stream_id: int, status: int, headers: AppHeaders, body: bytes) -> None:
        self.core.send_head(stream_id, status, self._with_defaults(headers, len(body)))
        self.send_data(stream_id, body, end_stream=True)

    def _with_defaults(self, headers: AppHeaders, length: int = 0) -> AppHeaders:
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
            self.response_done(self.streams[stream_id])
        self.unflushed += len(data)
        if self.unflushed < _EAGER_FLUSH:
            self._schedule_flush()
        else:
            self._flush()  # so that the transport can push back before more piles up

    def send_trailers(self, stream_id: int, headers: AppHeaders) -> None:
        held = self.held.get(stream_id)
        if held is not None:
            held.trailers = headers  # they follow the body still held
            return
        self.core.send_trailers(stream_id, headers)
        self._schedule_flush()
        self.response_done(self.streams[stream_id])

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
                    core.send_data(stream_id, chunk[:room])
                    chunks[0] = chunk[room:]
                    held.since = self.loop.time()
                    self._schedule_flush()
                return
            chunks.popleft()
            end = held.end_stream and not chunks and held.trailers is None
            core.send_data(stream_id, chunk, end)
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
            self.response_done(stream)

    def _release_all(self) -> None:
        for stream_id, held in list(self.held.items()):
            if self.held.get(stream_id) is held:
                self._release(stream_id, held)

    def _drop_held(self, stream_id: int) -> None:
        held = self.held.pop(stream_id, None)
        if held is not None:
            held.wake()  # its sender gives up: the stream is gone

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
                stream = self.streams.get(stream_id)
                if stream is not None:
                    stream.outcome = "write timeout"
                self.reset(stream_id)

    def consumed(self, stream_id: int, size: int) -> None:
        self.core.acknowledge(stream_id, size)
        self._schedule_flush()

    def reset(self, stream_id: int, error_code: int = ErrorCode.INTERNAL_ERROR) -> None:
        """The app failed after its response began, or its output stalled: RST_STREAM
        INTERNAL_ERROR (§8.1). (A WebSocket that gives up sends CANCEL, RFC 8441 §5.)"""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.disconnect()
            self.log_unfinished(stream, "reset")
        self._drop_held(stream_id)
        with contextlib.suppress(LocalProtocolError):  # already closed on the wire
            self.core.reset_stream(stream_id, error_code)
        self._schedule_flush()
        self._close_if_done()

    # -- connection bookkeeping ----------------------------------------------------------------

    def _close_if_done(self) -> None:
        if self.closing and not self.streams and self.transport is not None:
            self._flush()
            self.close()

    def _schedule_flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_pending = False
        self.unflushed = 0
        buffers = self.core.buffers_to_send()
        transport = self.transport
        if not buffers or transport is None or transport.is_closing():
            return
        if len(buffers) == 1:
            transport.write(buffers[0])
        else:
            transport.writelines(buffers)  # a large body's views, written without a copy

    # -- timers --------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: refill the flood budgets, reset stalled streams, close when idle."""
        self.core.flood.refill()
        if self.held:
            self._reset_stalled()
        idle = self.idle_since
        if idle is not None and self.loop.time() - idle >= self.state.config.timeout_keep_alive:
            self.shutdown()
        if self.transport is not None and not self.transport.is_closing():
            self.tick_timer = self.loop.call_later(1.0, self._tick)

    def _settings_deadline(self) -> None:
        self.handle(self.core.settings_timeout())
        self._flush()

    def shutdown(self) -> None:
        """Graceful: GOAWAY with the last stream we will process, finish those, then close.

        A connection that has brought no request yet may have been accepted just before the
        listener closed, its client's first streams on their way: a GOAWAY covering none of
        them at once would have the client retry them, yet curl fails them instead. So the
        GOAWAY follows the first read that brings streams (and covers them), or FRESH_GRACE.
        """
        if self.fresh and not self.closing:
            if self.fresh_timer is None:
                self.fresh_timer = self.loop.call_later(FRESH_GRACE, self._goaway)
            return
        self._goaway()

    def _goaway(self) -> None:
        if self.fresh_timer is not None:
            self.fresh_timer.cancel()
            self.fresh_timer = None
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(LocalProtocolError):  # the connection already failed
                self.handle(self.core.goaway(ErrorCode.NO_ERROR))
            self.closing = True
            self._flush()
            for stream in list(self.streams.values()):
                if isinstance(stream, H2WebSocket):
                    stream.shutdown()  # 1001, then END_STREAM once the client answers
        self._close_if_done()
