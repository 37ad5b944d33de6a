"""SETTINGS semantics (RFC 9113 §6.5): defaults, validation, and applying ours only on ACK."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caboose.core.h2.frames import parse_settings
from caboose.core.h2.settings import (
    DEFAULTS,
    UNLIMITED,
    LocalSettings,
    SettingCode,
    Settings,
    check_setting,
    encode_settings,
)
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

S = SettingCode


def test_setting_codes() -> None:
    assert [int(c) for c in S] == [1, 2, 3, 4, 5, 6, 8, 9]
    assert int(S.ENABLE_CONNECT_PROTOCOL) == 0x8 and int(S.NO_RFC7540_PRIORITIES) == 0x9


def test_defaults() -> None:
    settings = Settings()
    assert settings.as_dict() == DEFAULTS
    assert settings.header_table_size == 4096
    assert settings.enable_push == 1
    assert settings.max_concurrent_streams == UNLIMITED > 2**32 - 1
    assert settings.initial_window_size == 65_535
    assert settings.max_frame_size == 16_384
    assert settings.max_header_list_size == UNLIMITED
    assert settings.enable_connect_protocol == 0
    assert settings.no_rfc7540_priorities == 0
    assert settings.non_default() == []
    assert settings[S.MAX_FRAME_SIZE] == 16_384


@pytest.mark.parametrize(
    ("code", "value", "error"),
    [
        (S.ENABLE_PUSH, 2, ErrorCode.PROTOCOL_ERROR),
        (S.ENABLE_PUSH, 2**32 - 1, ErrorCode.PROTOCOL_ERROR),
        (S.INITIAL_WINDOW_SIZE, 2**31, ErrorCode.FLOW_CONTROL_ERROR),
        (S.INITIAL_WINDOW_SIZE, 2**32 - 1, ErrorCode.FLOW_CONTROL_ERROR),
        (S.MAX_FRAME_SIZE, 16_383, ErrorCode.PROTOCOL_ERROR),
        (S.MAX_FRAME_SIZE, 0, ErrorCode.PROTOCOL_ERROR),
        (S.MAX_FRAME_SIZE, 16_777_216, ErrorCode.PROTOCOL_ERROR),
        (S.ENABLE_CONNECT_PROTOCOL, 2, ErrorCode.PROTOCOL_ERROR),
        (S.NO_RFC7540_PRIORITIES, 7, ErrorCode.PROTOCOL_ERROR),
    ],
)
def test_invalid_received_values(code: int, value: int, error: ErrorCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Settings().apply_received([(code, value)])
    assert info.value.code == error
    assert info.value.stream_id == 0  # always a connection error


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (S.ENABLE_PUSH, 0),
        (S.ENABLE_PUSH, 1),
        (S.INITIAL_WINDOW_SIZE, 0),
        (S.INITIAL_WINDOW_SIZE, 2**31 - 1),
        (S.MAX_FRAME_SIZE, 16_384),
        (S.MAX_FRAME_SIZE, 16_777_215),
        (S.HEADER_TABLE_SIZE, 2**32 - 1),
        (S.MAX_CONCURRENT_STREAMS, 0),
        (S.MAX_HEADER_LIST_SIZE, 2**32 - 1),
        (S.ENABLE_CONNECT_PROTOCOL, 1),
        (0xFF, 12345),  # unknown: ignored (§6.5.2)
        (0, 2**32 - 1),
    ],
)
def test_valid_received_values(code: int, value: int) -> None:
    check_setting(code, value)
    settings = Settings()
    settings.apply_received([(code, value)])
    if code in DEFAULTS:
        assert settings[code] == value


def test_client_refuses_enable_push_from_server() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Settings().apply_received([(S.ENABLE_PUSH, 1)], sender_is_server=True)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    Settings().apply_received([(S.ENABLE_PUSH, 0)], sender_is_server=True)


def test_apply_received_reports_changes_only() -> None:
    settings = Settings()
    changed = settings.apply_received(
        [(S.HEADER_TABLE_SIZE, 4096), (S.INITIAL_WINDOW_SIZE, 1000), (0x42, 1)]
    )
    assert changed == {S.INITIAL_WINDOW_SIZE: (65_535, 1000)}
    assert settings.initial_window_size == 1000


def test_duplicate_ids_last_one_wins() -> None:
    # §6.5.3: values are processed in the order they appear.
    settings = Settings()
    changed = settings.apply_received([(S.MAX_FRAME_SIZE, 20_000), (S.MAX_FRAME_SIZE, 30_000)])
    assert changed == {S.MAX_FRAME_SIZE: (16_384, 30_000)}
    assert settings.apply_received([(S.MAX_FRAME_SIZE, 1 << 20), (S.MAX_FRAME_SIZE, 30_000)]) == {}


def test_invalid_frame_is_not_partially_applied() -> None:
    settings = Settings()
    with pytest.raises(RemoteProtocolError):
        settings.apply_received([(S.HEADER_TABLE_SIZE, 0), (S.ENABLE_PUSH, 5)])
    assert settings.header_table_size == 4096


def test_enable_connect_protocol_cannot_be_withdrawn() -> None:
    # RFC 8441 §3: once 1 was sent, 0 MUST NOT follow.
    settings = Settings()
    settings.apply_received([(S.ENABLE_CONNECT_PROTOCOL, 1)])
    settings.apply_received([(S.ENABLE_CONNECT_PROTOCOL, 1)])
    with pytest.raises(RemoteProtocolError) as info:
        settings.apply_received([(S.ENABLE_CONNECT_PROTOCOL, 0)])
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_no_rfc7540_priorities_fixed_after_first_frame() -> None:
    # RFC 9218 §2.1: the value MUST NOT change after the first SETTINGS frame.
    settings = Settings()
    settings.apply_received([(S.NO_RFC7540_PRIORITIES, 1)])
    settings.apply_received([(S.NO_RFC7540_PRIORITIES, 1)])
    with pytest.raises(RemoteProtocolError):
        settings.apply_received([(S.NO_RFC7540_PRIORITIES, 0)])
    late = Settings()
    late.apply_received([])
    with pytest.raises(RemoteProtocolError):
        late.apply_received([(S.NO_RFC7540_PRIORITIES, 1)])


def test_encode_settings_parses_back() -> None:
    pairs = [(1, 0), (4, 2**31 - 1), (9, 1)]
    payload = encode_settings(pairs)
    assert payload == b"\x00\x01\x00\x00\x00\x00\x00\x04\x7f\xff\xff\xff\x00\x09\x00\x00\x00\x01"
    assert parse_settings(0, 0, memoryview(payload)) == pairs


def test_non_default() -> None:
    settings = Settings()
    settings.update([(S.MAX_CONCURRENT_STREAMS, 100), (S.ENABLE_PUSH, 0)])
    assert settings.non_default() == [(S.ENABLE_PUSH, 0), (S.MAX_CONCURRENT_STREAMS, 100)]


# --- our own settings, pending until ACK (§6.5.3) ---------------------------------------------


def test_local_values_apply_only_on_ack() -> None:
    local = LocalSettings(is_server=True)
    pairs = local.propose({S.INITIAL_WINDOW_SIZE: 1 << 20, S.MAX_CONCURRENT_STREAMS: 100})
    assert pairs == [(S.INITIAL_WINDOW_SIZE, 1 << 20), (S.MAX_CONCURRENT_STREAMS, 100)]
    assert local.unacknowledged == 1
    assert local.current.initial_window_size == 65_535
    assert local.latest(S.INITIAL_WINDOW_SIZE) == 1 << 20
    changed = local.acknowledge()
    assert changed == {
        S.INITIAL_WINDOW_SIZE: (65_535, 1 << 20),
        S.MAX_CONCURRENT_STREAMS: (UNLIMITED, 100),
    }
    assert local.current.initial_window_size == 1 << 20
    assert local.unacknowledged == 0


def test_local_acks_are_fifo() -> None:
    local = LocalSettings(is_server=False)
    local.propose([(S.MAX_FRAME_SIZE, 32_768)])
    local.propose([(S.MAX_FRAME_SIZE, 20_000), (S.HEADER_TABLE_SIZE, 0)])
    assert local.unacknowledged == 2
    assert local.latest(S.MAX_FRAME_SIZE) == 20_000
    assert local.highest(S.MAX_FRAME_SIZE) == 32_768
    assert local.acknowledge() == {S.MAX_FRAME_SIZE: (16_384, 32_768)}
    assert local.current.max_frame_size == 32_768
    assert local.highest(S.MAX_FRAME_SIZE) == 32_768
    assert local.acknowledge() == {
        S.MAX_FRAME_SIZE: (32_768, 20_000),
        S.HEADER_TABLE_SIZE: (4096, 0),
    }
    assert local.highest(S.MAX_FRAME_SIZE) == 20_000


def test_unsolicited_ack_changes_nothing() -> None:
    local = LocalSettings(is_server=True)
    assert local.acknowledge() == {}
    assert local.current.as_dict() == DEFAULTS


@pytest.mark.parametrize(
    ("pairs", "is_server"),
    [
        ([(S.MAX_FRAME_SIZE, 100)], False),
        ([(S.INITIAL_WINDOW_SIZE, 2**31)], False),
        ([(S.ENABLE_PUSH, 1)], True),  # §6.5.2: a server MUST NOT set it to 1
        ([(S.HEADER_TABLE_SIZE, 2**32)], False),
        ([(0x10000, 1)], False),
        ([(S.ENABLE_CONNECT_PROTOCOL, -1)], False),
    ],
)
def test_local_invalid_values(pairs: list[tuple[int, int]], is_server: bool) -> None:
    local = LocalSettings(is_server=is_server)
    with pytest.raises(LocalProtocolError):
        local.propose(pairs)
    assert local.unacknowledged == 0


def test_local_flow_control_error_code_kept() -> None:
    with pytest.raises(LocalProtocolError) as info:
        LocalSettings(is_server=True).propose([(S.INITIAL_WINDOW_SIZE, 2**31)])
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


@given(st.lists(st.tuples(st.sampled_from(list(S)), st.integers(0, 1)), max_size=10))
def test_update_then_as_dict_consistent(pairs: list[tuple[SettingCode, int]]) -> None:
    settings = Settings()
    expected = dict(DEFAULTS)
    for code, value in pairs:
        expected[code] = value
    settings.update(pairs)
    assert settings.as_dict() == expected
