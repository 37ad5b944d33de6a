"""HPACK Huffman string coding (RFC 7541 §5.2, Appendix B), driven by tables built at import."""

from __future__ import annotations

from typing import Final

from caboose.core.h2.errors import HuffmanDecodingError
from caboose.core.h2.hpack_tables import HUFFMAN_CODES

EOS: Final = 256


# Encoding: each octet's code as a string of '0'/'1', so a whole string is one C-level
# join and one int(..., 2) parse instead of a Python loop over bits.
_BITS: Final[tuple[str, ...]] = tuple(
    format(code, f"0{length}b") for code, length in HUFFMAN_CODES[:EOS]
)
# Padding that completes the last octet, by the number of bits already in it.
_PADDING: Final = ("", "1111111", "111111", "11111", "1111", "111", "11", "1")
_LENGTHS: Final[tuple[int, ...]] = tuple(length for _, length in HUFFMAN_CODES[:EOS])


def encode(data: bytes) -> bytes:
    """Huffman-code ``data``; the last octet is padded with the EOS prefix (all ones, §5.2)."""
    codes = _BITS
    bits = "".join([codes[octet] for octet in data])
    bits += _PADDING[len(bits) & 7]
    return int(bits, 2).to_bytes(len(bits) >> 3, "big") if bits else b""


def encoded_length(data: bytes) -> int:
    """Length in octets of ``encode(data)``, without building it."""
    return (sum(map(_LENGTHS.__getitem__, data)) + 7) >> 3


# Decoding: a state machine that consumes one octet per step. A state is an internal node
# of the code tree (the bits read since the last complete symbol); each (state, octet) pair
# maps to the next state and the symbols completed on the way (at most two: codes are at
# least 5 bits long). Two flat lists indexed by state * 256 + octet hold the next state (also
# pre-multiplied by 256) and the completed symbols, so a step costs two list indexes.


def _build_tree() -> tuple[list[list[int]], list[int], list[bool]]:
    """Return child pointers (>= 0 internal node, < 0 leaf ~symbol), node depth, all-ones flag."""
    kids: list[list[int]] = [[0, 0]]
    depth = [0]
    ones = [True]
    for symbol, (code, length) in enumerate(HUFFMAN_CODES):
        node = 0
        for shift in range(length - 1, 0, -1):
            bit = (code >> shift) & 1
            if kids[node][bit] == 0:
                kids[node][bit] = len(kids)
                kids.append([0, 0])
                depth.append(depth[node] + 1)
                ones.append(ones[node] and bit == 1)
            node = kids[node][bit]
        kids[node][code & 1] = ~symbol
    return kids, depth, ones


def _walk(kids: list[list[int]], state: int, value: int, nbits: int) -> tuple[int, bytes]:
    """Feed ``nbits`` bits of ``value`` from ``state``; return (state, symbols), state -1 on EOS."""
    out = bytearray()
    for shift in range(nbits - 1, -1, -1):
        nxt = kids[state][(value >> shift) & 1]
        if nxt >= 0:
            state = nxt
            continue
        if ~nxt == EOS:
            # §5.2: a string containing the EOS symbol MUST be treated as a decoding error.
            return -1, b""
        out.append(~nxt)
        state = 0
    return state, bytes(out)


def _build_decoder() -> tuple[list[int], list[bytes], list[bool], int]:
    kids, depth, ones = _build_tree()
    fail = len(kids)
    # Composing two nibble steps is far cheaper to build than walking every octet bit by bit.
    nibbles = [[_walk(kids, s, n, 4) for n in range(16)] for s in range(fail)]
    shifted = [s << 8 for s in range(fail + 1)]  # shared int objects keep the table small
    shifted[-1] = fail << 8  # index -1 (EOS seen) means the fail state
    pieces: dict[bytes, bytes] = {}
    next_state: list[int] = []
    output: list[bytes] = []
    for state in range(fail):
        for mid, first in nibbles[state]:
            if mid < 0:
                next_state.extend([shifted[fail]] * 16)
                output.extend([b""] * 16)
                continue
            for end, second in nibbles[mid]:
                next_state.append(shifted[end])
                out = first + second
                output.append(pieces.setdefault(out, out))
    next_state.extend([shifted[fail]] * 256)
    output.extend([b""] * 256)
    # §5.2: the string may end mid-code only on a prefix of EOS (all ones) shorter than 8 bits.
    accept = [ones[s] and depth[s] <= 7 for s in range(fail)] + [False]
    return next_state, output, accept, fail


_NEXT, _OUTPUT, _ACCEPT, _FAIL = _build_decoder()


def decode(data: bytes) -> bytes:
    """Decode a Huffman-coded string; raise HuffmanDecodingError if it is malformed (§5.2)."""
    next_state = _NEXT
    output = _OUTPUT
    state = 0
    out: list[bytes] = []
    append = out.append
    for octet in data:
        index = state + octet
        state = next_state[index]
        append(output[index])
    state >>= 8
    if not _ACCEPT[state]:
        raise HuffmanDecodingError(_failure_reason(state))
    return b"".join(out)


def _failure_reason(state: int) -> str:
    if state == _FAIL:
        return "Huffman string contains the EOS symbol"
    return "Huffman string has invalid padding (not all ones, or longer than 7 bits)"
