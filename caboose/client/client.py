"""``Client``: requests out over a pool of HTTP/1.1 and HTTP/2 connections, responses back
with their trailers, their size bounded, and a reason for every way an exchange can end."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from caboose import __version__
from caboose.client.connect import ConnectOptions, Origin, client_ssl_context, open_connection
from caboose.client.driver import ClientDriver, Options, Request, Unavailable
from caboose.client.errors import (
    ClientError,
    CloseReason,
    ConnectionLost,
    InvalidHostname,
)
from caboose.client.pool import Pool
from caboose.client.response import Response
from caboose.client.stream import ClientStream, Limits
from caboose.core.events import Headers
from caboose.core.headers import validate_fields, validate_trailers
from caboose.errors import LocalProtocolError

HeaderInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
Content = bytes | bytearray | memoryview | str | AsyncIterable[bytes]

_UNSET: object = object()
# A DNS label (RFC 1123 §2.1), underscores allowed: container and service names use them.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


@dataclass(slots=True, frozen=True)
class Timeout:
    """Seconds each wait may take; ``None`` waits for ever.

    ``connect``: TCP and TLS (and an HTTP/2 server's SETTINGS); ``read``: between two pieces
    of the response; ``write``: for the server to take more of the request body; ``pool``:
    for a connection, or a stream under the server's MAX_CONCURRENT_STREAMS.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 60.0
    pool: float | None = 60.0

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value, value)


class InvalidURL(ValueError):
    """The URL is not an absolute http:// or https:// URL."""


def _fields(headers: HeaderInput | None) -> Headers:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    fields = [(_bytes(name).lower(), _bytes(value)) for name, value in pairs]
    try:
        validate_fields(fields)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from None
    return fields


def _bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


@functools.lru_cache(maxsize=512)  # clients ask for the same few URLs again and again
def _origin(url: str) -> tuple[Origin, bytes]:
    """The origin a URL names and its request-target (path and query, RFC 9112 §3.2.1)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"{url!r}: the scheme must be http or https")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidURL(f"{url!r}: {exc}") from None
    if not host:
        raise InvalidURL(f"{url!r}: no host")
    if parts.netloc.endswith(":"):
        raise InvalidURL(f"{url!r}: empty port")
    host = _check_host(host)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    port = port if port is not None else (443 if scheme == "https" else 80)
    try:
        return Origin(scheme, host, port), target.encode("ascii")
    except UnicodeError:
        raise InvalidURL(f"{url!r}: the path must be percent-encoded ASCII") from None


def _check_host(host: str) -> str:
    """The host as it goes on the wire (IDNA for a non-ASCII name), or InvalidHostname."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidHostname(f"invalid hostname {host!r}") from None
    labels = ascii_host.removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidHostname(f"invalid hostname {host!r}")
    return ascii_host


class Client:
    """An asyncio HTTP client for HTTP/1.1 and HTTP/2 that hands you response trailers.

    Use it as ``async with Client() as client``; connections are pooled per origin.
    ``http2`` offers h2 by ALPN over TLS; ``http2_prior_knowledge`` speaks h2c on cleartext
    URLs. ``max_response_size`` resets a response that grows larger (``ResponseTooLarge``);
    ``warn_response_size`` logs once when one does. Both can be set per request.
    """

    def __init__(
        self,
        *,
        http2: bool = True,
        http2_prior_knowledge: bool = False,
        verify: bool | str | ssl.SSLContext = True,
        cert: str | tuple[str, str] | None = None,
        timeout: Timeout | float | None = Timeout(),
        max_response_size: int | None = 1 << 30,
        warn_response_size: int | None = 32 << 20,
        max_connections_per_origin: int = 10,
        keepalive_expiry: float | None = 5.0,
        keepalive_ping: float | None = None,
        ping_timeout: float = 20.0,
        stream_window: int = 1 << 20,
        connection_window: int = 16 << 20,
        headers: HeaderInput | None = None,
        user_agent: str | None = f"caboose/{__version__}",
    ) -> None:
        self.timeout = Timeout.of(timeout)
        self.max_response_size = max_response_size
        self.warn_response_size = warn_response_size
        self.headers = _fields(headers)
        if user_agent is not None and not any(name == b"user-agent" for name, _ in self.headers):
            self.headers.append((b"user-agent", user_agent.encode("latin-1")))
        self._prior_knowledge = http2_prior_knowledge
        self._http2 = http2
        self._options = ConnectOptions(
            http2=http2,
            prior_knowledge=http2_prior_knowledge,
            ssl_context=None,
            timeout=self.timeout.connect,
            driver=Options(
                write_timeout=self.timeout.write,
                keepalive_ping=keepalive_ping,
                ping_timeout=ping_timeout,
                stream_window=stream_window,
                connection_window=connection_window,
            ),
        )
        self._verify = verify
        self._cert = cert
        self._pool = Pool(
            self._connect,
            may_multiplex=self._may_multiplex,
            max_connections=max_connections_per_origin,
            keepalive_expiry=keepalive_expiry,
        )
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._pool.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks

    # -- connections -------------------------------------------------------------------------

    def _may_multiplex(self, origin: Origin) -> bool:
        return self._prior_knowledge if origin.scheme == "http" else self._http2

    async def _connect(self, origin: Origin) -> ClientDriver:
        options = self._options
        if origin.scheme == "https" and options.ssl_context is None:
            options.ssl_context = client_ssl_context(self._verify, self._http2, self._cert)
        return await open_connection(origin, options)

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderInput | None = None,
        content: Content | None = None,
        trailers: HeaderInput | None = None,
        max_response_size: int | object | None = _UNSET,
        warn_response_size: int | object | None = _UNSET,
        timeout: Timeout | float | object | None = _UNSET,
    ) -> Response:
        """Send a request and read the whole response: body and trailers are there on return."""
        async with self.stream(
            method,
            url,
            headers=headers,
            content=content,
            trailers=trailers,
            max_response_size=max_response_size,
            warn_response_size=warn_response_size,
            timeout=timeout,
        ) as response:
            await response.read()
        return response

    async def get(self, url: str, **options: object) -> Response:
        return await self.request("GET", url, **options)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderInput | None = None,
        content: Content | None = None,
        trailers: HeaderInput | None = None,
        max_response_size: int | object | None = _UNSET,
        warn_response_size: int | object | None = _UNSET,
        timeout: Timeout | float | object | None = _UNSET,
    ) -> AsyncIterator[Response]:
        """Send a request and yield the response once its head is in; the request body (an
        async iterator) keeps going meanwhile, so both directions stream at once, as a
        bidirectional gRPC call needs. Leaving the block early resets the exchange."""
        if self._closed:
            raise RuntimeError("the client is closed")
        times = self.timeout if timeout is _UNSET else Timeout.of(timeout)  # type: ignore[arg-type]
        origin, target = _origin(url)
        body, length = _body(content)
        trailer_fields = _fields(trailers)
        try:
            validate_trailers(trailer_fields)
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        request = Request(
            method=method.upper().encode("ascii"),
            scheme=origin.scheme.encode("ascii"),
            authority=origin.authority.encode("ascii"),
            target=target,
            headers=self._request_headers(headers, length, bool(trailer_fields)),
            end_stream=body is None and not trailer_fields,
            limits=Limits(
                self.max_response_size if max_response_size is _UNSET else max_response_size,  # type: ignore[arg-type]
                self.warn_response_size if warn_response_size is _UNSET else warn_response_size,  # type: ignore[arg-type]
                times.read,
            ),
            description=f"{method.upper()} {url}",
            pool_timeout=times.pool,
        )
        request = _with_host(request)
        replayable = not isinstance(body, AsyncIterable)
        for attempt in range(2):
            driver, stream = await self._start(origin, request)
            sender = None
            if not request.end_stream:
                sender = asyncio.create_task(_send_body(driver, stream, body, trailer_fields))
            try:
                head = await stream.wait_head()
            except ConnectionLost:
                await _stop(sender)
                # A kept-alive HTTP/1.1 connection the server closed as we reused it: nothing
                # was processed, so a body we can replay is sent again on a new connection.
                if attempt == 0 and replayable and driver.exchanges > 1 and not stream.received:
                    continue
                raise
            except BaseException:
                stream.abandon()
                await _stop(sender)
                raise
            break
        response = Response(method.upper(), url, stream, head)
        try:
            yield response
        finally:
            stream.abandon()
            await _stop(sender)

    def _request_headers(
        self, headers: HeaderInput | None, length: int | None, trailers: bool
    ) -> Headers:
        fields = [*self.headers, *_fields(headers)]
        names = {name for name, _ in fields}
        if b"te" not in names:
            fields.append((b"te", b"trailers"))  # RFC 9110 §10.1.4: we read trailers
        if length is not None and b"content-length" not in names and not trailers:
            fields.append((b"content-length", b"%d" % length))
        return fields

    async def _start(self, origin: Origin, request: Request) -> tuple[ClientDriver, ClientStream]:
        """A connection and a stream on it; a connection that turns out unable to take it
        (closing, a GOAWAY) was not sent the request, so the next one is tried."""
        try:
            for _ in range(3):
                driver = await self._pool.acquire(origin, request.pool_timeout)
                try:
                    return driver, await driver.start(request)
                except Unavailable:
                    continue
        except LocalProtocolError as exc:
            raise ValueError(f"{request.description}: {exc}") from None
        raise ConnectionLost(f"{request.description}: every connection closed as it was tried")


def _with_host(request: Request) -> Request:
    """A Host field given by the caller becomes the authority (:authority in HTTP/2)."""
    host = next((value for name, value in request.headers if name == b"host"), None)
    if host is None:
        return request
    headers = [field for field in request.headers if field[0] != b"host"]
    return Request(
        request.method,
        request.scheme,
        host,
        request.target,
        headers,
        request.end_stream,
        request.limits,
        request.description,
        request.pool_timeout,
    )


def _body(content: Content | None) -> tuple[bytes | AsyncIterable[bytes] | None, int | None]:
    """The body to send and its length, if known up front."""
    if content is None:
        return None, None
    if isinstance(content, str):
        content = content.encode("utf-8")
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
        return data, len(data)
    return content, None


async def _send_body(
    driver: ClientDriver,
    stream: ClientStream,
    body: bytes | AsyncIterable[bytes] | None,
    trailers: Headers,
) -> None:
    """Send the request body, then its trailers; runs beside the wait for the response."""
    try:
        if isinstance(body, bytes):
            await driver.send_data(stream, body, end_stream=not trailers)
        elif body is not None:
            async for chunk in body:
                if chunk:
                    await driver.send_data(stream, bytes(chunk), end_stream=False)
            if not trailers:
                await driver.send_data(stream, b"", end_stream=True)
        elif not trailers:
            await driver.send_data(stream, b"", end_stream=True)
        if trailers:
            await driver.send_trailers(stream, trailers)
    except ClientError as error:
        stream.fail(error)  # no-op once the response is over: the server needed no more
    except Exception as exc:
        failure = ClientError(
            f"{stream.target}: the request body failed: {exc!r}", reason=CloseReason.CANCELLED
        )
        failure.__cause__ = exc
        stream.fail(failure)
        driver.cancel(stream.stream_id)


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
