"""HPACK decoder and encoder: RFC 7541 Appendix A and C vectors, errors, limits, caches, policy."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from caboose.core.h2.hpack import (
    MAX_INTEGER,
    Decoder,
    Encoder,
    HeaderListTooLarge,
    HPACKDecodingError,
    decode_integer,
    encode_integer,
)
from caboose.core.h2.hpack_tables import STATIC_TABLE
from caboose.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from tests.testdata import RFC7541

DATA = RFC7541
APPENDIX_C: dict[str, Any] = json.loads((DATA / "appendix_c.json").read_text())


def _fields(pairs: list[list[str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def test_embedded_static_table_matches_appendix_a_file() -> None:
    expected = []
    for line in (DATA / "static_table.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        index, name, value = line.split("\t")
        expected.append((int(index), name.encode(), value.encode()))
    assert [(i, n, v) for i, (n, v) in enumerate(STATIC_TABLE, start=1)] == expected


# --- RFC 7541 C.1: integers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix_bits", "wire"),
    [
        (10, 5, "0a"),  # C.1.1
        (1337, 5, "1f9a0a"),  # C.1.2
        (42, 8, "2a"),  # C.1.3
        (31, 5, "1f00"),  # exactly the prefix maximum needs a zero continuation
        (MAX_INTEGER, 4, "0ff0ffffff0f"),
    ],
)
def test_integer_examples(value: int, prefix_bits: int, wire: str) -> None:
    assert encode_integer(value, prefix_bits).hex() == wire
    data = bytes.fromhex(wire)
    assert decode_integer(data, 0, prefix_bits) == (value, len(data))


def test_integer_prefix_flags_are_preserved() -> None:
    assert encode_integer(10, 5, 0xE0).hex() == "ea"
    assert decode_integer(bytes.fromhex("ea"), 0, 5) == (10, 1)


# --- RFC 7541 C.2: single representations ----------------------------------------------

C2 = [
    # name, wire, field, sensitive, dynamic table after, its size
    (
        "C.2.1 literal with indexing",
        "400a637573746f6d2d6b65790d637573746f6d2d686561646572",
        (b"custom-key", b"custom-header"),
        [(b"custom-key", b"custom-header")],
        55,
    ),
    (
        "C.2.2 literal without indexing",
        "040c2f73616d706c652f70617468",
        (b":path", b"/sample/path"),
        [],
        0,
    ),
    (
        "C.2.3 literal never indexed",
        "100870617373776f726406736563726574",
        (b"password", b"secret", True),
        [],
        0,
    ),
    ("C.2.4 indexed", "82", (b":method", b"GET"), [], 0),
]


@pytest.mark.parametrize(
    ("wire", "field", "table", "size"), [c[1:] for c in C2], ids=[c[0] for c in C2]
)
def test_c2_decode(wire: str, field: tuple[Any, ...], table: list[Any], size: int) -> None:
    decoder = Decoder()
    assert decoder.decode(bytes.fromhex(wire)) == [field[:2]]
    assert decoder.never_indexed == (frozenset({0}) if len(field) == 3 else frozenset())
    assert decoder.dynamic_table == table
    assert decoder.table_size == size


@pytest.mark.parametrize(("wire", "field"), [c[1:3] for c in C2], ids=[c[0] for c in C2])
def test_c2_encode(wire: str, field: tuple[Any, ...]) -> None:
    assert Encoder().encode([field], huffman=False).hex() == wire


# --- RFC 7541 C.3-C.6: sequences sharing one context -----------------------------------

SEQUENCES = APPENDIX_C["sequences"]
SEQUENCE_IDS = [s["name"] for s in SEQUENCES]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=SEQUENCE_IDS)
def test_appendix_c_decode(sequence: dict[str, Any]) -> None:
    decoder = Decoder(max_table_size=sequence["header_table_size"])
    for step in sequence["steps"]:
        assert decoder.decode(bytes.fromhex(step["wire"])) == _fields(step["headers"])
        assert decoder.dynamic_table == _fields(step["dynamic_table"])
        assert decoder.table_size == step["dynamic_table_size"]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=SEQUENCE_IDS)
def test_appendix_c_encode_byte_for_byte(sequence: dict[str, Any]) -> None:
    # The RFC's encoder indexes every field, so replace our no-index policy with none.
    encoder = Encoder(max_table_size=sequence["header_table_size"], no_index_names=())
    use_huffman = "with Huffman" in sequence["name"]
    for step in sequence["steps"]:
        wire = encoder.encode(_fields(step["headers"]), huffman=use_huffman)
        assert wire.hex() == step["wire"]


# --- decoding errors (RFC 7541 §4-§6) --------------------------------------------------

DECODING_ERRORS = {
    "size update above the limit": "3fe21f",  # 4097 > 4096
    "size update after a field": "8220",
    "size update between fields": "20823f00",
    "index 0": "80",
    "index past the dynamic table": "be",
    "far index": "ff8101",
    "literal name index past the table": "7e0161",
    "literal name index 0 is a new name, then truncated": "40",
    "huffman EOS": "0484ffffffff",
    "huffman padding not all ones": "048118",
    "huffman padding over 7 bits": "04821fff",
    "truncated integer": "ff",
    "truncated integer continuation": "ff80",
    "truncated string length": "04",
    "truncated string": "04056162",
    "missing value": "400161",
    "truncated name length": "0f",
    "integer too long": "ff808080808000",
    "integer past 2**32": "ff8080808010",
}


@pytest.mark.parametrize("wire", DECODING_ERRORS.values(), ids=DECODING_ERRORS.keys())
def test_decoding_errors(wire: str) -> None:
    with pytest.raises(HPACKDecodingError) as info:
        Decoder().decode(bytes.fromhex(wire))
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.code == ErrorCode.COMPRESSION_ERROR
    assert not info.value.is_stream_error


def test_size_updates_at_block_start_are_allowed() -> None:
    decoder = Decoder()
    decoder.decode(bytes.fromhex("4001610162"))  # a: b
    # Two updates (§4.2: shrink then grow) empty the table and leave it at 4096.
    assert decoder.decode(bytes.fromhex("203fe11f82")) == [(b":method", b"GET")]
    assert decoder.dynamic_table == []
    assert decoder.table_max_size == 4096


def test_lowered_setting_requires_a_size_update() -> None:
    decoder = Decoder()
    assert decoder.decode(b"\x82") == [(b":method", b"GET")]
    decoder.max_allowed_table_size = 100
    with pytest.raises(HPACKDecodingError, match="size update"):
        decoder.decode(b"\x82")  # the cached result must not bypass the check


def test_lowered_setting_satisfied_by_update() -> None:
    decoder = Decoder()
    decoder.max_allowed_table_size = 100
    assert decoder.decode(bytes.fromhex("3f4582")) == [(b":method", b"GET")]
    assert decoder.table_max_size == 100
    assert decoder.decode(b"\x82") == [(b":method", b"GET")]


def test_raised_setting_allows_larger_tables() -> None:
    decoder = Decoder()
    decoder.max_allowed_table_size = 16384
    assert decoder.decode(bytes.fromhex("3fe17f82")) == [(b":method", b"GET")]
    assert decoder.table_max_size == 16384


def test_oversized_entry_empties_the_table() -> None:
    decoder = Decoder(max_table_size=64)
    decoder.decode(bytes.fromhex("4001610162"))
    assert decoder.table_size == 34
    big = b"x" * 40
    decoder.decode(b"\x40\x01k" + bytes((len(big),)) + big)  # §4.4: 1 + 40 + 32 > 64
    assert decoder.dynamic_table == []
    assert decoder.table_size == 0


def test_eviction_keeps_newest_entries() -> None:
    decoder = Decoder(max_table_size=70)  # room for two 34-octet entries
    for name in b"abc":
        decoder.decode(b"\x40\x01" + bytes((name,)) + b"\x01v")
    assert decoder.dynamic_table == [(b"c", b"v"), (b"b", b"v")]
    assert decoder.decode(b"\xbe\xbf") == [(b"c", b"v"), (b"b", b"v")]


# --- header list size ------------------------------------------------------------------


def test_header_list_too_large_is_a_431_stream_level_error() -> None:
    decoder = Decoder(max_header_list_size=100)
    with pytest.raises(HeaderListTooLarge) as info:
        decoder.decode(b"\x82" * 4)  # 4 * (7 + 3 + 32) = 168 > 100
    assert info.value.status == 431
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    assert isinstance(info.value, RemoteProtocolError)
    assert not isinstance(info.value, HPACKDecodingError)
    assert decoder.decode(b"\x82\x82") == [(b":method", b"GET")] * 2  # 84 octets fit


def test_hpack_bomb_is_refused_and_the_table_stays_in_sync() -> None:
    decoder = Decoder()
    value = b"a" * 4000
    decoder.decode(b"\x40\x04bomb\x7f" + encode_integer(len(value), 7)[1:] + value)
    assert decoder.dynamic_table == [(b"bomb", value)]
    # 100k references would expand to ~400 MB; the block also adds an entry after them.
    block = b"\xbe" * 100_000 + bytes.fromhex("4001610162")
    tracemalloc.start()
    try:
        with pytest.raises(HeaderListTooLarge):
            decoder.decode(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # the expanded list was never built
    assert decoder.dynamic_table == [(b"a", b"b"), (b"bomb", value)]
    assert decoder.decode(b"\xbe\xbf") == [(b"a", b"b"), (b"bomb", value)]


def test_cached_block_respects_a_lowered_list_limit() -> None:
    decoder = Decoder()
    assert decoder.decode(b"\x82\x84") == [(b":method", b"GET"), (b":path", b"/")]
    decoder.max_header_list_size = 50
    with pytest.raises(HeaderListTooLarge):
        decoder.decode(b"\x82\x84")


# --- the decoded-block cache -----------------------------------------------------------


def test_cached_decode_returns_a_fresh_list() -> None:
    decoder = Decoder()
    first = decoder.decode(b"\x82\x86\x84")
    first.append((b"x", b"y"))
    second = decoder.decode(memoryview(b"\x82\x86\x84"))
    assert second == [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
    assert second is not first


def test_cache_is_invalidated_when_the_table_changes() -> None:
    decoder = Decoder()
    decoder.decode(bytes.fromhex("4001610131"))  # a: 1
    assert decoder.decode(b"\xbe") == [(b"a", b"1")]
    decoder.decode(bytes.fromhex("4001610132"))  # a: 2 is now index 62
    assert decoder.decode(b"\xbe") == [(b"a", b"2")]
    decoder.decode(bytes.fromhex("3f00"))  # size update to 31 evicts everything
    with pytest.raises(HPACKDecodingError):
        decoder.decode(b"\xbe")


def test_never_indexed_positions_survive_the_cache() -> None:
    decoder = Decoder()
    block = bytes.fromhex("82") + b"\x10\x06secret\x01s" + bytes.fromhex("84")
    for _ in range(2):
        assert decoder.decode(block) == [(b":method", b"GET"), (b"secret", b"s"), (b":path", b"/")]
        assert decoder.never_indexed == frozenset({1})
    decoder.decode(b"\x82")
    assert decoder.never_indexed == frozenset()


def test_many_distinct_blocks_keep_decoding() -> None:
    decoder = Decoder()
    for round_ in range(2):
        for index in range(1, 62):
            for other in (2, 3):
                block = bytes((0x80 | index, 0x80 | other))
                assert decoder.decode(block) == [
                    STATIC_TABLE[index - 1],
                    STATIC_TABLE[other - 1],
                ], round_


# --- the encoder -----------------------------------------------------------------------


def test_common_response_fields() -> None:
    encoder = Encoder()
    headers = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    first = encoder.encode(headers)
    assert first[:1] == b"\x88"
    assert first[1:2] == b"\x5f"  # content-type: incremental indexing, static name 31
    assert first.endswith(bytes.fromhex("0f0d820b3f"))  # content-length: not indexed
    second = encoder.encode(headers)
    assert second == bytes.fromhex("88be0f0d820b3f")
    assert encoder.encode(headers, huffman=False) == bytes.fromhex("88be0f0d023133")
    assert encoder.encode(headers) == second
    decoder = Decoder()
    assert decoder.decode(first) == headers
    assert decoder.decode(second) == headers


def test_static_exact_matches_are_one_octet() -> None:
    encoder = Encoder()
    for index, field in enumerate(STATIC_TABLE, start=1):
        if field[1] and STATIC_TABLE.index(field) == index - 1:
            assert encoder.encode([field]) == bytes((0x80 | index,))


@pytest.mark.parametrize(
    "field",
    [
        (b"authorization", b"Bearer abc"),
        (b"proxy-authorization", b"Basic Zm9v"),
        (b"cookie", b"sid=1"),
        (b"x-secret", b"v", True),
    ],
)
def test_sensitive_fields_are_never_indexed(field: tuple[Any, ...]) -> None:
    encoder = Encoder()
    decoder = Decoder()
    for _ in range(2):
        wire = encoder.encode([(b":method", b"GET"), field])
        assert wire[1] & 0xF0 == 0x10
        assert decoder.decode(wire) == [(b":method", b"GET"), field[:2]]
        assert decoder.never_indexed == frozenset({1})
    assert decoder.dynamic_table == []


def test_long_cookies_are_indexed() -> None:
    encoder = Encoder()
    cookie = (b"cookie", b"session=0123456789abcdef")
    encoder.encode([cookie])
    assert encoder.encode([cookie]) == b"\xbe"


def test_date_is_indexed_since_it_repeats_within_a_second() -> None:
    encoder = Encoder()
    date = (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT")
    encoder.encode([date])
    assert encoder.encode([date]) == b"\xbe"


@pytest.mark.parametrize(
    "field",
    [(b":path", b"/a"), (b"content-length", b"1234"), (b"set-cookie", b"a=b")],
)
def test_volatile_fields_are_not_indexed(field: tuple[bytes, bytes]) -> None:
    encoder = Encoder()
    wire = encoder.encode([field])
    assert wire[0] & 0xF0 == 0x00
    decoder = Decoder()
    assert decoder.decode(wire) == [field]
    assert decoder.dynamic_table == []


def test_large_fields_are_not_indexed() -> None:
    encoder = Encoder(max_table_size=256)
    wire = encoder.encode([(b"x-big", b"v" * 200)], huffman=False)
    assert wire[0] == 0x00


def test_dynamic_name_reuse() -> None:
    encoder = Encoder()
    encoder.encode([(b"x-name", b"one")])
    wire = encoder.encode([(b"x-name", b"two")], huffman=False)
    assert wire == b"\x7e\x03two"  # incremental indexing, name index 62


def test_table_size_update_shrink_then_grow() -> None:
    encoder = Encoder()
    decoder = Decoder()
    decoder.decode(encoder.encode([(b"x-a", b"1")]))
    encoder.set_max_table_size(0)
    encoder.set_max_table_size(4096)
    wire = encoder.encode([(b"x-a", b"1")], huffman=False)
    assert wire[:4] == bytes.fromhex("203fe11f")
    assert wire[4] == 0x40  # the entry was evicted, so it is sent (and indexed) again
    assert decoder.decode(wire) == [(b"x-a", b"1")]
    assert decoder.dynamic_table == [(b"x-a", b"1")]


def test_table_size_update_once_and_only_when_changed() -> None:
    encoder = Encoder()
    encoder.set_max_table_size(4096)
    assert encoder.encode([(b":method", b"GET")]) == b"\x82"
    encoder.set_max_table_size(1024)
    encoder.set_max_table_size(2048)
    assert encoder.encode([]) == bytes.fromhex("3fe1073fe10f")  # 1024, then 2048
    assert encoder.encode([]) == b""
    encoder.set_max_table_size(8192)
    assert encoder.encode([]) == bytes.fromhex("3fe13f")
    encoder.set_max_table_size(16384)
    encoder.set_max_table_size(1024)
    assert encoder.encode([]) == bytes.fromhex("3fe107")  # the minimum is also the final


def test_encoder_evicts_like_the_decoder() -> None:
    encoder = Encoder(max_table_size=100, no_index_names=())
    decoder = Decoder(max_table_size=100)
    rounds = [[(b"x-" + bytes((c,)), b"v" * (c % 7))] for c in b"abcdefgabc"]
    for headers in rounds * 2:
        assert decoder.decode(encoder.encode(headers)) == headers


@pytest.mark.parametrize(
    "headers",
    [
        [(b"a",)],
        [(b"a", b"b", True, 1)],
        [("a", b"b")],
        [(b"a", "b")],
        [(bytearray(b"a"), b"b")],
        [[b"a", b"b"]],
        [b"ab"],
    ],
)
def test_encoder_misuse(headers: Any) -> None:
    with pytest.raises(LocalProtocolError):
        Encoder().encode(headers)


@pytest.mark.parametrize("size", [-1, 2**32])
def test_bad_table_size(size: int) -> None:
    with pytest.raises(LocalProtocolError):
        Encoder().set_max_table_size(size)
