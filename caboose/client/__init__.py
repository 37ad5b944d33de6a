"""caboose.client: an asyncio HTTP/1.1 and HTTP/2 client on caboose's own protocol cores.

It reads response trailers (and sends request trailers), bounds response sizes, and ends
every exchange with a typed ``CloseReason``. See docs/client.md.
"""

from caboose.client.client import Client, InvalidURL, Timeout
from caboose.client.errors import (
    ClientError,
    ClientTimeout,
    CloseReason,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    InvalidHostname,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    ResponseTooLarge,
    StreamRefused,
    StreamReset,
    WriteTimeout,
)
from caboose.client.response import Fields, Response

__all__ = [
    "Client",
    "ClientError",
    "ClientTimeout",
    "CloseReason",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "Fields",
    "InvalidHostname",
    "InvalidURL",
    "PoolTimeout",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "ResponseTooLarge",
    "StreamRefused",
    "StreamReset",
    "Timeout",
    "WriteTimeout",
]
