"""Both server cores say the same thing about the same request.

Each request in the table is written twice by independent encoders: as HTTP/1.1 bytes by hand
and as HTTP/2 frames by the ``h2`` library. Both go through our server cores, and the event
sequences, once the differences that are the protocols' own (stream numbering, Host against
:authority, :scheme) are set aside, must be equal: what a driver does with a request can then
never depend on the protocol it came by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import pytest

from caboose.core.events import (
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    TrailersReceived,
)
from caboose.core.h1 import H1Connection
from caboose.core.h2.connection import H2Connection

Fields = list[tuple[bytes, bytes]]


@dataclass
class Request:
    method: bytes = b"GET"
    target: bytes = b"/"
    headers: Fields = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    trailers: Fields = field(default_factory=list)

    def as_http1(self) -> bytes:
        head = [b"%s %s HTTP/1.1\r\nhost: example.test\r\n" % (self.method, self.target)]
        head += [b"%s: %s\r\n" % pair for pair in self.headers]
        if self.trailers:
            head.append(b"transfer-encoding: chunked\r\n\r\n")
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in self.chunks)
            body += b"0\r\n" + b"".join(b"%s: %s\r\n" % t for t in self.trailers) + b"\r\n"
            return b"".join(head) + body
        if self.chunks or self.method == b"POST":
            head.append(b"content-length: %d\r\n" % sum(map(len, self.chunks)))
        return b"".join(head) + b"\r\n" + b"".join(self.chunks)

    def write_http2(self, client: h2.connection.H2Connection, stream_id: int) -> None:
        pseudo = [
            (b":method", self.method),
            (b":scheme", b"http"),
            (b":authority", b"example.test"),
            (b":path", self.target),
        ]
        headers = list(self.headers)
        if not self.trailers and (self.chunks or self.method == b"POST"):
            headers.append((b"content-length", b"%d" % sum(map(len, self.chunks))))
        bodiless = not self.chunks and not self.trailers
        client.send_headers(stream_id, pseudo + headers, end_stream=bodiless)
        for index, chunk in enumerate(self.chunks):
            last = index == len(self.chunks) - 1 and not self.trailers
            client.send_data(stream_id, chunk, end_stream=last)
        if self.trailers:
            client.send_headers(stream_id, self.trailers, end_stream=True)


TABLE = {
    "GET": Request(),
    "HEAD": Request(method=b"HEAD"),
    "GET with a query and fields": Request(
        target=b"/a/b?c=d", headers=[(b"accept", b"*/*"), (b"x-id", b"7")]
    ),
    "OPTIONS *": Request(method=b"OPTIONS", target=b"*"),
    "empty POST": Request(method=b"POST"),
    "POST, one piece": Request(method=b"POST", chunks=[b"hello"]),
    "POST, three pieces, trailers": Request(
        method=b"POST",
        headers=[(b"te", b"trailers")],
        chunks=[b"a", b"bb", b"ccc"],
        trailers=[(b"x-checksum", b"42")],
    ),
    "TE: trailers": Request(headers=[(b"te", b"trailers")]),
    "Expect: 100-continue": Request(
        method=b"PUT", headers=[(b"expect", b"100-continue")], chunks=[b"data"]
    ),
}


_PROTOCOL_OWN = frozenset({b"host", b"transfer-encoding"})


def normalised(events: list[Event]) -> list[tuple[Any, ...]]:
    """The request's events in a form both protocols share (stream ids in order of arrival)."""
    ids: dict[int, int] = {}
    out: list[tuple[Any, ...]] = []
    for event in events:
        match event:
            case RequestReceived():
                number = ids.setdefault(event.stream_id, len(ids))
                # Host is :authority's HTTP/1.1 form; chunked coding is HTTP/1.1's own framing.
                headers = [p for p in event.headers if p[0] not in _PROTOCOL_OWN]
                out.append(
                    (
                        "request",
                        number,
                        event.method,
                        event.target,
                        event.end_stream,
                        event.authority,
                        event.accepts_trailers,
                        event.expect_continue,
                        headers,
                    )
                )
            case DataReceived():
                out.append(("data", ids[event.stream_id], event.data, event.end_stream))
            case TrailersReceived():
                out.append(("trailers", ids[event.stream_id], event.headers))
            case StreamEnded():
                out.append(("ended", ids[event.stream_id]))
    return out


def through_h1(requests: list[Request]) -> list[Event]:
    return H1Connection().receive_data(b"".join(r.as_http1() for r in requests))


def through_h2(requests: list[Request]) -> list[Event]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    for index, request in enumerate(requests):
        request.write_http2(client, 1 + 2 * index)
    server = H2Connection(client_side=False)
    server.initiate()
    return server.receive_data(client.data_to_send())


@pytest.mark.parametrize("name", TABLE)
def test_one_request_reads_the_same_on_both_cores(name: str) -> None:
    request = TABLE[name]
    assert normalised(through_h1([request])) == normalised(through_h2([request]))


def test_requests_in_a_row_read_the_same_on_both_cores() -> None:
    """Pipelined on HTTP/1.1, one after another on HTTP/2's streams."""
    requests = list(TABLE.values())
    h1 = normalised(through_h1(requests))
    assert h1 == normalised(through_h2(requests))
    assert [e[0] for e in h1].count("ended") == len(requests)


def test_every_request_ends_with_stream_ended() -> None:
    for request in TABLE.values():
        for events in (through_h1([request]), through_h2([request])):
            assert isinstance(normalised(events)[-1], tuple)
            assert normalised(events)[-1][0] == "ended"


def test_the_facts_are_read_by_the_core() -> None:
    for through in (through_h1, through_h2):
        head = next(
            e for e in through([TABLE["Expect: 100-continue"]]) if isinstance(e, RequestReceived)
        )
        assert (head.authority, head.expect_continue, head.accepts_trailers) == (
            b"example.test",
            True,
            False,
        )
        head = next(e for e in through([TABLE["TE: trailers"]]) if isinstance(e, RequestReceived))
        assert head.accepts_trailers
