"""HPACK Huffman coding: embedded code table, RFC 7541 vectors, malformed strings, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caboose.core.h2 import huffman
from caboose.core.h2.errors import HuffmanDecodingError
from caboose.core.h2.hpack_tables import HUFFMAN_CODES
from caboose.errors import ErrorCode, RemoteProtocolError
from tests.testdata import RFC7541

DATA = RFC7541


def _bits(text: str) -> bytes:
    """Pack a string of '0'/'1' (spaces ignored) into octets; it must fill whole octets."""
    text = text.replace(" ", "")
    assert len(text) % 8 == 0
    return int(text, 2).to_bytes(len(text) // 8, "big")


def test_embedded_code_matches_appendix_b_file() -> None:
    expected = []
    for line in (DATA / "huffman.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        symbol, code, length = line.split("\t")
        expected.append((int(symbol), int(code, 16), int(length)))
    assert [(s, c, n) for s, (c, n) in enumerate(HUFFMAN_CODES)] == expected


@pytest.mark.parametrize(
    ("plain", "coded"),
    [
        # RFC 7541 C.4.1-C.4.3 and C.6.1-C.6.3 string literals.
        (b"www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"),
        (b"no-cache", "a8eb10649cbf"),
        (b"custom-key", "25a849e95ba97d7f"),
        (b"custom-value", "25a849e95bb8e8b4bf"),
        (b"302", "6402"),
        (b"private", "aec3771a4b"),
        (b"Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"),
        (b"https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"),
        (b"gzip", "9bd9ab"),
        (
            b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
        ),
        (b"", ""),
    ],
)
def test_rfc_vectors(plain: bytes, coded: str) -> None:
    wire = bytes.fromhex(coded)
    assert huffman.encode(plain) == wire
    assert huffman.encoded_length(plain) == len(wire)
    assert huffman.decode(wire) == plain


def test_padding_of_up_to_seven_ones_is_accepted() -> None:
    # 'a' is 00011 (5 bits): three padding bits of EOS prefix complete the octet.
    assert huffman.decode(_bits("00011 111")) == b"a"
    # '0' '0' '0' is 15 bits plus one padding bit.
    assert huffman.decode(_bits("00000 00000 00000 1")) == b"000"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (_bits("00011 000"), "padding"),  # padding not all ones
        (_bits("00011 010"), "padding"),
        (_bits("00011 111 11111111"), "padding"),  # 11 bits of padding, > 7
        (b"\xff", "padding"),  # a whole octet of padding
        (_bits("1" * 30 + "11"), "EOS"),  # the EOS code itself
        (_bits("00011" + "1" * 30 + "1" * 5), "EOS"),  # 'a' then EOS
        (_bits("1" * 30 + "00011" + "1" * 5), "EOS"),  # EOS before other symbols
    ],
)
def test_malformed_strings_are_compression_errors(wire: bytes, reason: str) -> None:
    with pytest.raises(HuffmanDecodingError, match=reason) as info:
        huffman.decode(wire)
    assert info.value.code == ErrorCode.COMPRESSION_ERROR


def test_every_symbol_round_trips_alone_and_together() -> None:
    everything = bytes(range(256))
    assert huffman.decode(huffman.encode(everything)) == everything
    for symbol in range(256):
        one = bytes((symbol,))
        assert huffman.decode(huffman.encode(one)) == one


def test_agrees_with_the_hpack_library() -> None:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    peer = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    sample = bytes(range(256)) * 3 + b"GET /index.html HTTP/2 text/plain; charset=utf-8"
    assert huffman.encode(sample) == peer.encode(sample)


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    coded = huffman.encode(data)
    assert len(coded) == huffman.encoded_length(data)
    assert huffman.decode(coded) == data


@given(st.binary(max_size=64))
def test_random_input_raises_only_protocol_errors(data: bytes) -> None:
    try:
        decoded = huffman.decode(data)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.COMPRESSION_ERROR
    else:
        # Whatever decodes must re-encode to the same octets: the code is canonical.
        assert huffman.encode(decoded) == data


def test_long_strings_round_trip() -> None:
    # Far past int()'s default 4300-digit limit, which only applies to non-binary bases.
    data = bytes(range(256)) * 80
    assert huffman.decode(huffman.encode(data)) == data
