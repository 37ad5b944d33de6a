"""RFC 9113 §3.4 (h2spec 3.5): the connection preface, server and client roles."""

from __future__ import annotations

from caboose.core.events import ConnectionTerminated, SettingsAcknowledged, SettingsChanged
from caboose.core.h2 import frames as fr
from caboose.core.h2.connection import ConnectionState, H2Connection
from caboose.core.h2.settings import SettingCode
from caboose.errors import ErrorCode

from .rawpeer import RawClient, T, raw, read_frames


def test_server_preface_is_settings_then_connection_credit() -> None:
    client = RawClient()
    first = client.server_preface[0]
    assert first[0] == T.SETTINGS and first[1] == 0 and first[2] == 0
    pairs = dict(fr.parse_settings(0, 0, memoryview(first[3])))
    assert pairs[SettingCode.MAX_CONCURRENT_STREAMS] == 100
    # §6.9.2: only WINDOW_UPDATE grows the connection window beyond 65535.
    window = client.server_preface[1]
    assert window[0] == T.WINDOW_UPDATE and window[2] == 0
    assert int.from_bytes(window[3], "big") == (16 << 20) - 65_535


def test_client_preface_accepted_and_settings_acknowledged() -> None:
    client = RawClient()
    events = client.send(fr.PREFACE + client.settings((SettingCode.ENABLE_PUSH, 0)))
    assert isinstance(events[0], SettingsChanged)
    assert client.output() == [(T.SETTINGS, fr.FLAG_ACK, 0, b"")]
    assert client.conn.state is ConnectionState.OPEN


def test_client_preface_in_pieces() -> None:
    client = RawClient()
    data = fr.PREFACE + client.settings()
    for byte in data[:-1]:
        assert client.send(bytes([byte])) == []
    assert isinstance(client.send(data[-1:])[0], SettingsChanged)


def test_invalid_preface_is_a_protocol_error() -> None:
    client = RawClient()
    client.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR, last_stream_id=0)


def test_http11_request_is_refused_at_once() -> None:
    client = RawClient()
    client.send(b"GET / HTTP/1.1\r\n")
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_first_frame_must_be_settings() -> None:
    client = RawClient()
    client.send(fr.PREFACE + client.ping())
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_first_frame_settings_ack_is_not_a_preface() -> None:
    client = RawClient()
    client.send(fr.PREFACE + raw(T.SETTINGS, fr.FLAG_ACK, 0))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_first_frame_headers_is_refused() -> None:
    client = RawClient()
    client.send(fr.PREFACE + client.headers(1))
    client.expect_connection_error(ErrorCode.PROTOCOL_ERROR)


def test_receive_before_initiate_initiates() -> None:
    server = H2Connection(client_side=False)
    server.receive_data(fr.PREFACE + RawClient.settings())
    frames = read_frames(server.data_to_send())
    assert frames[0][0] == T.SETTINGS and frames[0][1] == 0  # our preface comes first
    assert (T.SETTINGS, fr.FLAG_ACK, 0, b"") in frames


def test_client_role_sends_magic_and_settings_without_push() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    data = client.data_to_send()
    assert data.startswith(fr.PREFACE)
    frames = read_frames(data[len(fr.PREFACE) :])
    pairs = dict(fr.parse_settings(0, 0, memoryview(frames[0][3])))
    assert pairs[SettingCode.ENABLE_PUSH] == 0


def test_client_role_requires_server_settings_first() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    client.data_to_send()
    events = client.receive_data(RawClient.ping())
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ErrorCode.PROTOCOL_ERROR
    goaway = [f for f in read_frames(client.data_to_send()) if f[0] == T.GOAWAY]
    assert int.from_bytes(goaway[0][3][4:8], "big") == ErrorCode.PROTOCOL_ERROR


def test_client_role_accepts_server_preface() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    client.data_to_send()
    events = client.receive_data(RawClient.settings() + raw(T.SETTINGS, fr.FLAG_ACK, 0))
    assert [type(e) for e in events] == [SettingsChanged, SettingsAcknowledged]
    assert read_frames(client.data_to_send()) == [(T.SETTINGS, fr.FLAG_ACK, 0, b"")]


def test_server_settings_with_push_enabled_is_an_error_for_clients() -> None:
    client = H2Connection(client_side=True)
    client.initiate()
    events = client.receive_data(RawClient.settings((SettingCode.ENABLE_PUSH, 1)))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code == ErrorCode.PROTOCOL_ERROR
