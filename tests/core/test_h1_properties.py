"""Property tests for the HTTP/1.1 core: arbitrary input never escapes as a crash."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from caboose.core.events import RequestReceived
from caboose.core.h1 import ConnectionState, H1Connection

VALID = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_random_bytes_give_events_or_a_clean_error(data: bytes, step: int) -> None:
    conn = H1Connection()
    for start in range(0, len(data), step):
        conn.receive_data(data[start : start + step])
    out = conn.data_to_send()
    if out:
        assert out.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5"))
        assert conn.state is ConnectionState.DONE


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(VALID)), max_size=6))
def test_any_split_of_a_valid_request_parses_the_same(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(VALID)]
    conn = H1Connection()
    events = []
    for start, end in itertools.pairwise(bounds):
        if start < end:  # b"" would mean the peer closed
            events += conn.receive_data(VALID[start:end])
    requests = [e for e in events if isinstance(e, RequestReceived)]
    assert len(requests) == 1 and requests[0].target == b"/x"
    body = b"".join(getattr(e, "data", b"") for e in events)
    assert body == b"abc"
