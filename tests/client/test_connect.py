"""What the client says when it cannot even start: bad URLs and hostnames, refused
connections, a certificate for another name, a handshake that never ends; and the Fields
view of a header section."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import trustme

from caboose.client import (
    Client,
    CloseReason,
    ConnectError,
    ConnectTimeout,
    Fields,
    InvalidHostname,
    InvalidURL,
)
from tests.client.h2server import run


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/", "127.0.0.1:80/", "http:///path", "http://127.0.0.1:99999/", "http://h:/"],
)
def test_bad_urls_are_value_errors(url: str) -> None:
    async def scenario() -> None:
        async with Client() as client:
            with pytest.raises(InvalidURL):
                await client.get(url)

    run(scenario())


@pytest.mark.parametrize("host", ["exa mple", "-leading", "a..b", "x" * 64 + ".test"])
def test_invalid_hostnames_are_refused_before_any_lookup(host: str) -> None:
    async def scenario() -> None:
        async with Client() as client:
            with pytest.raises((InvalidHostname, InvalidURL)) as caught:
                await client.get(f"http://{host}/")
            if isinstance(caught.value, InvalidHostname):
                assert caught.value.reason is CloseReason.INVALID_HOSTNAME

    run(scenario())


def test_a_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def scenario() -> None:
        async with Client() as client:
            with pytest.raises(ConnectError) as caught:
                await client.get(f"http://127.0.0.1:{port}/")
            assert caught.value.reason is CloseReason.CONNECT_FAILED
            assert f"127.0.0.1:{port}" in str(caught.value)

    run(scenario())


def test_a_certificate_for_another_name_is_an_invalid_hostname(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("elsewhere.test")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def scenario() -> None:
        context = __import__("ssl").SSLContext(__import__("ssl").PROTOCOL_TLS_SERVER)
        issued.configure_cert(context)
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Client(verify=str(tmp_path / "ca.pem")) as client:
                with pytest.raises(InvalidHostname) as caught:
                    await client.get(f"https://127.0.0.1:{port}/")
                assert "127.0.0.1" in str(caught.value)
        finally:
            server.close()

    run(scenario())


def test_a_handshake_that_never_ends_is_a_connect_timeout() -> None:
    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept TCP, never answer the TLS ClientHello

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Client(timeout=0.3) as client:
                with pytest.raises(ConnectTimeout) as caught:
                    await client.get(f"https://127.0.0.1:{port}/")
                assert caught.value.reason is CloseReason.INACTIVE
                assert isinstance(caught.value, TimeoutError)
        finally:
            for writer in held:
                writer.close()
            server.close()

    run(scenario())


def test_an_http1_server_spoken_to_in_h2c_fails_cleanly() -> None:
    async def scenario() -> None:
        async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(http1, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with Client(http2_prior_knowledge=True, timeout=2) as client:
                with pytest.raises(ConnectError):
                    await client.get(f"http://127.0.0.1:{port}/")
        finally:
            server.close()

    run(scenario())


def test_fields() -> None:
    fields = Fields([(b"grpc-status", b"0"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    assert fields["GRPC-Status"] == "0" and "set-cookie" in fields
    assert fields.get_all("set-cookie") == ["a=1", "b=2"]
    assert fields.get("missing") is None and fields.get("missing", "x") == "x"
    with pytest.raises(KeyError):
        fields["missing"]
    assert fields[0] == ("grpc-status", "0") and len(fields) == 3
    assert fields == [("grpc-status", "0"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
    assert fields.raw[1] == (b"set-cookie", b"a=1")
