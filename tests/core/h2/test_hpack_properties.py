"""HPACK properties: encode/decode round trips (also through a peer) and hostile input."""

from __future__ import annotations

import contextlib
from typing import Any

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from caboose.core.h2.errors import HeaderListTooLarge, HPACKDecodingError
from caboose.core.h2.hpack import Decoder, Encoder
from caboose.core.h2.hpack_tables import STATIC_TABLE

COMMON_NAMES = sorted({name for name, _ in STATIC_TABLE} | {b"x-custom", b"x-trace"})
names = st.one_of(st.sampled_from(COMMON_NAMES), st.binary(max_size=20))
values = st.one_of(
    st.sampled_from([b"", b"GET", b"200", b"/", b"gzip, deflate", b"text/plain"]),
    st.binary(max_size=60),
)
fields = st.one_of(
    st.tuples(names, values),
    st.tuples(names, values, st.booleans()),
)
# A block is a list of fields, or an int: a new SETTINGS_HEADER_TABLE_SIZE from the peer.
steps = st.lists(st.one_of(st.lists(fields, max_size=12), st.integers(0, 5000)), max_size=12)


def _is_never_indexed(field: tuple[Any, ...]) -> bool:
    name, value = field[:2]
    explicit = len(field) == 3 and field[2]
    return (
        bool(explicit)
        or name in (b"authorization", b"proxy-authorization")
        or (name == b"cookie" and len(value) < 20)
    )


@given(steps, st.booleans(), st.sampled_from([4096, 256, 0]))
@settings(max_examples=150, deadline=None)
def test_round_trip(script: list[Any], use_huffman: bool, initial: int) -> None:
    encoder = Encoder(max_table_size=initial)
    ours = Decoder(max_table_size=initial)
    peer = hpack.Decoder()
    peer.max_allowed_table_size = peer.header_table_size = initial
    for step in script:
        if isinstance(step, int):
            encoder.set_max_table_size(step)
            ours.max_allowed_table_size = peer.max_allowed_table_size = step
            continue
        wire = encoder.encode(step, huffman=use_huffman)
        expected = [field[:2] for field in step]
        assert ours.decode(wire) == expected
        assert ours.never_indexed == {i for i, f in enumerate(step) if _is_never_indexed(f)}
        assert [tuple(f) for f in peer.decode(wire, raw=True)] == expected
        assert ours.table_size <= ours.table_max_size


@given(st.lists(st.tuples(names, values), max_size=8))
@settings(max_examples=100, deadline=None)
def test_repeated_blocks_decode_alike(headers: list[tuple[bytes, bytes]]) -> None:
    encoder = Encoder()
    decoder = Decoder()
    for _ in range(3):
        assert decoder.decode(encoder.encode(headers)) == headers


SEED = Encoder(no_index_names=()).encode(
    [(b"x-a", b"1"), (b"x-b", b"2" * 40), (b":authority", b"example.com")]
)


def _decode_only_protocol_errors(decoder: Decoder, data: bytes) -> None:
    # Anything else (IndexError, ValueError, ...) escapes and fails the test.
    with contextlib.suppress(HPACKDecodingError, HeaderListTooLarge):
        decoder.decode(data)


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    _decode_only_protocol_errors(Decoder(), data)


@given(st.lists(st.binary(max_size=80), max_size=6), st.integers(0, 300))
@settings(max_examples=300)
def test_random_blocks_on_a_populated_table(blocks: list[bytes], limit: int) -> None:
    decoder = Decoder(max_header_list_size=limit)
    _decode_only_protocol_errors(decoder, SEED)
    for block in blocks:
        _decode_only_protocol_errors(decoder, block)
        assert decoder.table_size <= decoder.table_max_size


@given(st.data())
@settings(max_examples=300)
def test_mutated_valid_blocks_raise_only_protocol_errors(data: st.DataObject) -> None:
    block = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(block) - 1))
        block[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(block)))
    decoder = Decoder()
    _decode_only_protocol_errors(decoder, bytes(block[:cut]))
    _decode_only_protocol_errors(decoder, bytes(block))
