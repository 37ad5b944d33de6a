"""Flow-control window accounting (RFC 9113 §6.9): send windows and batched receive credit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caboose.core.h2.window import MAX_WINDOW_SIZE, ReceiveWindow, SendWindow
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

# --- send side --------------------------------------------------------------------------------


def test_send_window_consume_and_grow() -> None:
    window = SendWindow(stream_id=3)
    assert window.available == 65_535
    window.consume(65_535)
    assert window.available == 0
    window.grow(100)
    assert window.available == 100


def test_send_beyond_window_is_local_error() -> None:
    window = SendWindow(10, stream_id=1)
    with pytest.raises(LocalProtocolError):
        window.consume(11)
    assert window.available == 10


@pytest.mark.parametrize("stream_id", [0, 5])
def test_window_update_overflow(stream_id: int) -> None:
    # §6.9.1: RST_STREAM on a stream window, GOAWAY on the connection window.
    window = SendWindow(MAX_WINDOW_SIZE - 10, stream_id=stream_id)
    window.grow(10)
    with pytest.raises(RemoteProtocolError) as info:
        window.grow(1)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert info.value.stream_id == stream_id
    assert window.available == MAX_WINDOW_SIZE


def test_settings_change_may_make_window_negative() -> None:
    # §6.9.2: a smaller SETTINGS_INITIAL_WINDOW_SIZE can leave a negative window.
    window = SendWindow(stream_id=1)
    window.consume(60_000)
    window.adjust(16_384 - 65_535)
    assert window.available == 5535 - 49_151 < 0
    window.grow(50_000)
    assert window.available == 5535 - 49_151 + 50_000


def test_settings_change_overflow_is_connection_error() -> None:
    window = SendWindow(stream_id=7)
    with pytest.raises(RemoteProtocolError) as info:
        window.adjust(MAX_WINDOW_SIZE)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert info.value.stream_id == 0


# --- receive side -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream_id", [0, 9])
def test_data_beyond_window(stream_id: int) -> None:
    window = ReceiveWindow(100, stream_id=stream_id)
    window.receive(60)
    with pytest.raises(RemoteProtocolError) as info:
        window.receive(41)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
    assert info.value.stream_id == stream_id


def test_credit_is_batched_at_half_the_target() -> None:
    window = ReceiveWindow(100)
    window.receive(100)
    assert window.consume(20) == 0
    assert window.consume(29) == 0
    assert window.consume(1) == 50  # half of the target reached: one WINDOW_UPDATE
    assert window.available == 50
    assert window.consume(50) == 50
    assert window.available == 100


def test_flush_credits_everything() -> None:
    window = ReceiveWindow(100)
    window.receive(30)
    assert window.consume(30) == 0
    assert window.flush() == 30
    assert window.flush() == 0
    assert window.available == 100


def test_raising_target_credits_at_once() -> None:
    # The connection window starts at 65535 whatever SETTINGS say (§6.9.2); raise it early.
    window = ReceiveWindow()
    assert window.set_target(1 << 24) == (1 << 24) - 65_535
    assert window.available == 1 << 24


def test_lowering_target_withholds_credit() -> None:
    window = ReceiveWindow(1000)
    assert window.set_target(400) == 0
    window.receive(1000)
    assert window.consume(600) == 0  # withheld: the peer's window shrinks towards 400
    assert window.consume(200) == 200
    assert window.available == 200
    assert window.consume(200) == 200
    assert window.available == 400


def test_set_target_range() -> None:
    with pytest.raises(LocalProtocolError):
        ReceiveWindow().set_target(2**31)


def test_receive_adjust_follows_settings_change() -> None:
    window = ReceiveWindow(65_535, stream_id=1)
    window.receive(60_000)
    window.adjust(16_384 - 65_535)
    assert window.target == 16_384
    assert window.available < 0
    with pytest.raises(RemoteProtocolError):
        window.receive(1)
    assert window.consume(60_000) == 60_000
    assert window.available == 16_384


def test_receive_adjust_overflow_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ReceiveWindow(stream_id=1).adjust(MAX_WINDOW_SIZE)


ops = st.lists(st.tuples(st.sampled_from(["receive", "consume", "flush"]), st.integers(0, 5000)))


@given(st.integers(1, 1 << 20), ops)
def test_receive_window_never_stalls(target: int, steps: list[tuple[str, int]]) -> None:
    # Invariant: available + buffered + uncredited == target, and once everything is
    # consumed the peer can always send at least half the target.
    window = ReceiveWindow(target)
    buffered = sent_credit = 0
    for op, n in steps:
        if op == "receive":
            n = min(n, window.available)
            window.receive(n)
            buffered += n
        elif op == "consume":
            n = min(n, buffered)
            buffered -= n
            sent_credit += window.consume(n)
        else:
            sent_credit += window.flush()
        assert window.available >= 0
    if buffered:
        sent_credit += window.consume(buffered)
    assert window.available >= target - (target >> 1)
    assert window.available <= target
    assert window.available + window.flush() == target
