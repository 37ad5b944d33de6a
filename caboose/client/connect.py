"""Opening a connection to an origin: TCP, TLS with ALPN, and the driver that speaks.

Over TLS the protocol is known only once the handshake is done (ALPN, RFC 7301), so the
connection starts on a small placeholder protocol that keeps whatever arrives early (an HTTP/2
server's SETTINGS may come in the same flight as the handshake's end), then hands the
transport and those bytes to the chosen driver. An HTTP/2 connection counts as made once
the server's SETTINGS arrived (RFC 9113 §3.4): until then we cannot know how many streams
it takes, and a server that never sends them is not speaking HTTP/2.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

from caboose.client.driver import ClientDriver, Options
from caboose.client.errors import ClientError, ConnectError, ConnectTimeout, InvalidHostname
from caboose.client.http1 import H1ClientDriver
from caboose.client.http2 import H2ClientDriver


@dataclass(slots=True, frozen=True)
class Origin:
    """Where a connection goes (RFC 6454): what the pool keys connections by."""

    scheme: str  # "http" or "https"
    host: str  # a name, an IPv4 address, or an IPv6 address without brackets
    port: int

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(slots=True)
class ConnectOptions:
    http2: bool  # offer h2 by ALPN over TLS
    prior_knowledge: bool  # speak HTTP/2 at once on cleartext (h2c)
    ssl_context: ssl.SSLContext | None
    timeout: float | None
    driver: Options


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
_NAME_MISMATCH = frozenset({62, 64})


class _Handshake(asyncio.Protocol):
    """Holds a TLS connection until its protocol is chosen, keeping early bytes."""

    def __init__(self) -> None:
        self.early = bytearray()
        self.lost: Exception | None = None
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.early += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc


async def open_connection(origin: Origin, options: ConnectOptions) -> ClientDriver:
    """A driver on a new connection to ``origin``; raises a ``ConnectError`` saying why not."""
    try:
        async with asyncio.timeout(options.timeout):
            if origin.scheme == "https":
                driver = await _open_tls(origin, options)
            else:
                driver = await _open_cleartext(origin, options)
            if isinstance(driver, H2ClientDriver):
                await _preface(driver, origin)
            return driver
    except ClientError:
        raise
    except TimeoutError:
        raise ConnectTimeout(
            f"connecting to {origin.authority} took more than {options.timeout} s"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _NAME_MISMATCH:
            raise InvalidHostname(f"{origin.host}: {exc.verify_message}") from exc
        raise ConnectError(f"TLS with {origin.authority}: {exc.verify_message}") from exc
    except socket.gaierror as exc:
        raise InvalidHostname(f"cannot resolve {origin.host!r}: {exc.strerror}") from exc
    except (OSError, ssl.SSLError) as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise ConnectError(f"cannot connect to {origin.authority}: {detail}") from exc


async def _preface(driver: H2ClientDriver, origin: Origin) -> None:
    """Wait for the server's SETTINGS; anything else means it does not speak HTTP/2."""
    try:
        await driver.ready
    except ClientError as exc:
        raise ConnectError(f"{origin.authority} did not start HTTP/2: {exc}") from exc


def _driver(http2: bool, options: Options) -> ClientDriver:
    return H2ClientDriver(options) if http2 else H1ClientDriver(options)


async def _open_cleartext(origin: Origin, options: ConnectOptions) -> ClientDriver:
    loop = asyncio.get_running_loop()
    driver = _driver(options.prior_knowledge, options.driver)
    await loop.create_connection(lambda: driver, origin.host, origin.port)
    return driver


async def _open_tls(origin: Origin, options: ConnectOptions) -> ClientDriver:
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_connection(
        _Handshake,
        origin.host,
        origin.port,
        ssl=options.ssl_context,
        server_hostname=origin.host,
    )
    ssl_object = transport.get_extra_info("ssl_object")
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    driver = _driver(alpn == "h2", options.driver)
    transport.set_protocol(driver)
    driver.connection_made(transport)
    if probe.early:
        driver.data_received(bytes(probe.early))
    if probe.closed:
        driver.connection_lost(probe.lost)
    return driver


def client_ssl_context(
    verify: bool | str | ssl.SSLContext, http2: bool, cert: str | tuple[str, str] | None = None
) -> ssl.SSLContext:
    """The TLS context for ``verify`` (True: the system's CAs; a path: a CA bundle; False: no
    check at all), offering h2 and http/1.1 by ALPN or only http/1.1."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=verify)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        context.load_cert_chain(certfile, keyfile)
    return context
