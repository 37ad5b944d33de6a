"""HPACK header compression (RFC 7541): the field-block Decoder and Encoder with their tables."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final, TypeAlias

from caboose.core.h2 import huffman
from caboose.core.h2.errors import HeaderListTooLarge, HPACKDecodingError, HuffmanDecodingError
from caboose.core.h2.hpack_tables import STATIC_TABLE
from caboose.errors import LocalProtocolError

Field: TypeAlias = tuple[bytes, bytes]
# What Encoder.encode accepts: a field, or (name, value, True) for a sensitive one (§6.2.3).
HeaderField: TypeAlias = tuple[bytes, bytes] | tuple[bytes, bytes, bool]

ENTRY_OVERHEAD: Final = 32  # §4.1: an entry's size is len(name) + len(value) + 32
MAX_INTEGER: Final = 2**32 - 1  # §5.1 lets us cap integers; nothing in HTTP/2 needs more
_MAX_CONTINUATION_OCTETS: Final = 5  # enough for MAX_INTEGER after any prefix
_STATIC_COUNT: Final = len(STATIC_TABLE)
_FIRST_DYNAMIC: Final = _STATIC_COUNT + 1  # §2.3.3: dynamic indices follow the static ones
# Index 0 is a placeholder so that _STATIC[i] is static entry i; index 0 itself is an error.
_STATIC: Final[tuple[Field, ...]] = ((b"", b""), *STATIC_TABLE)
_NO_FIELDS: Final[frozenset[int]] = frozenset()

# Decoded-block cache bounds: at most this many blocks of at most this many octets per
# decoder, so a peer cannot make a connection hold much memory through it.
_BLOCK_CACHE_ENTRIES: Final = 128
_BLOCK_CACHE_MAX_OCTETS: Final = 256
_FIELD_CACHE_ENTRIES: Final = 512


def decode_integer(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """Decode the §5.1 integer whose prefix is in ``data[pos]``; return (value, next pos)."""
    mask = (1 << prefix_bits) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    for shift in range(0, 7 * _MAX_CONTINUATION_OCTETS, 7):
        if pos >= len(data):
            raise HPACKDecodingError("field block ends inside an integer")
        octet = data[pos]
        pos += 1
        value += (octet & 0x7F) << shift
        if not octet & 0x80:
            if value > MAX_INTEGER:
                raise HPACKDecodingError(f"integer {value} exceeds {MAX_INTEGER}")
            return value, pos
    raise HPACKDecodingError("integer encoding is too long")


def encode_integer(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    """Encode ``value`` as a §5.1 integer, OR-ing ``flags`` into the first octet."""
    mask = (1 << prefix_bits) - 1
    if value < mask:
        return bytes((flags | value,))
    out = bytearray((flags | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(data: bytes, huffman_ok: bool) -> bytes:
    """Encode a §5.2 string literal, Huffman-coded when allowed and not longer."""
    if huffman_ok and data:
        coded = huffman.encode(data)
        # On a tie Huffman wins, as in RFC 7541 C.6.2 ("307" codes to 3 octets too).
        if len(coded) <= len(data):
            return encode_integer(len(coded), 7, 0x80) + coded
    return encode_integer(len(data), 7) + data


def _decode_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """Decode the §5.2 string literal at ``pos``; return (octets, next pos)."""
    if pos >= len(data):
        raise HPACKDecodingError("field block ends before a string literal")
    first = data[pos]
    length = first & 0x7F
    if length == 0x7F:
        length, pos = decode_integer(data, pos, 7)
    else:
        pos += 1
    end = pos + length
    if end > len(data):
        raise HPACKDecodingError("string literal runs past the end of the field block")
    if not first & 0x80:
        return data[pos:end], end
    try:
        return huffman.decode(data[pos:end]), end
    except HuffmanDecodingError as exc:
        raise HPACKDecodingError(str(exc)) from exc


class Decoder:
    """Decode field blocks from one peer; one instance per connection direction (§2.2).

    ``never_indexed`` holds, after each successful ``decode()``, the positions in the returned
    list of fields the peer sent as "literal never indexed" (§6.2.3), so an intermediary can
    re-encode them the same way. It is an empty shared frozenset when there are none.
    """

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 65536) -> None:
        self._table: deque[Field] = deque()  # newest first: _table[0] is index 62 (§2.3.3)
        self._size = 0
        self._max_size = max_table_size  # set by the peer's size updates (§6.3)
        self._allowed = max_table_size  # our SETTINGS_HEADER_TABLE_SIZE bounds it (§4.2)
        self._update_required = False
        self.max_header_list_size = max_header_list_size
        self.never_indexed: frozenset[int] = _NO_FIELDS
        # A block that does not change the table decodes the same way until the table
        # changes; _generation counts changes and guards the cache entries.
        self._generation = 0
        self._cache: dict[bytes, tuple[int, tuple[Field, ...], int, frozenset[int]]] = {}

    @property
    def max_allowed_table_size(self) -> int:
        """Our SETTINGS_HEADER_TABLE_SIZE: the largest table the peer may ask for.

        Set it when the peer acknowledges our SETTINGS. Lowering it below the current size
        obliges the peer to open its next block with a size update (§4.2).
        """
        return self._allowed

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, size: int) -> None:
        self._allowed = size
        if size < self._max_size:
            self._update_required = True
            self._generation += 1

    @property
    def table_size(self) -> int:
        """Current dynamic table size in §4.1 octets."""
        return self._size

    @property
    def table_max_size(self) -> int:
        """Current dynamic table capacity, as last set by a size update."""
        return self._max_size

    @property
    def generation(self) -> int:
        """Counts dynamic table changes: a block decoded without changing it decodes the same
        way again as long as the generation is unchanged (callers may cache derived data)."""
        return self._generation

    @property
    def dynamic_table(self) -> list[Field]:
        """The dynamic table entries, newest first (index 62 first)."""
        return list(self._table)

    def decode(self, block: bytes | memoryview) -> list[Field]:
        """Decode one complete field block into a fresh list of (name, value) pairs.

        Raises HPACKDecodingError for a malformed block and HeaderListTooLarge (after the
        whole block updated the table) when the fields exceed max_header_list_size.
        """
        data = block if type(block) is bytes else bytes(block)
        hit = self._cache.get(data)
        if hit is not None and hit[0] == self._generation:
            _, fields, size, never = hit
            self.never_indexed = never
            if size > self.max_header_list_size:
                self.never_indexed = _NO_FIELDS
                raise HeaderListTooLarge(f"header list of {size} octets is too large")
            return list(fields)
        return self._decode_block(data)

    def _decode_block(self, data: bytes) -> list[Field]:
        self.never_indexed = _NO_FIELDS
        if self._update_required and (not data or data[0] & 0xE0 != 0x20):
            raise HPACKDecodingError("expected a dynamic table size update after SETTINGS")
        generation = self._generation
        static = _STATIC
        limit = self.max_header_list_size
        fields: list[Field] = []
        never: list[int] = []
        size = pos = 0
        end = len(data)
        while pos < end:
            first = data[pos]
            if first & 0x80:  # §6.1 indexed field
                index = first & 0x7F
                if index == 0x7F:
                    index, pos = decode_integer(data, pos, 7)
                else:
                    pos += 1
                field = static[index] if 0 < index <= _STATIC_COUNT else self._lookup(index)
            elif first & 0x40:  # §6.2.1 literal with incremental indexing
                field, pos = self._literal(data, pos, 6)
                self._add(field)
            elif first & 0x20:  # §6.3 dynamic table size update
                pos = self._size_update(data, pos, size)
                continue
            else:  # §6.2.2 without indexing (0000), §6.2.3 never indexed (0001)
                field, pos = self._literal(data, pos, 4)
                if first & 0x10:
                    never.append(len(fields))
            size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if size <= limit:  # past the limit, stop storing (HPACK bomb)
                fields.append(field)
        return self._finish(data, fields, size, never, generation)

    def _finish(
        self, data: bytes, fields: list[Field], size: int, never: list[int], generation: int
    ) -> list[Field]:
        if size > self.max_header_list_size:
            raise HeaderListTooLarge(f"header list of at least {size} octets is too large")
        self.never_indexed = frozenset(never) if never else _NO_FIELDS
        if generation == self._generation and len(data) <= _BLOCK_CACHE_MAX_OCTETS:
            if len(self._cache) >= _BLOCK_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[data] = (generation, tuple(fields), size, self.never_indexed)
        return fields

    def _lookup(self, index: int) -> Field:
        if index == 0:
            raise HPACKDecodingError("index 0 is not a valid field index (§6.1)")
        try:
            return self._table[index - _FIRST_DYNAMIC]
        except IndexError:
            raise HPACKDecodingError(f"field index {index} is out of range") from None

    def _literal(self, data: bytes, pos: int, prefix_bits: int) -> tuple[Field, int]:
        """Decode a §6.2 literal whose name index has ``prefix_bits`` bits (0: new name)."""
        index, pos = decode_integer(data, pos, prefix_bits)
        if index:
            name = _STATIC[index][0] if index <= _STATIC_COUNT else self._lookup(index)[0]
        else:
            name, pos = _decode_string(data, pos)
        value, pos = _decode_string(data, pos)
        return (name, value), pos

    def _size_update(self, data: bytes, pos: int, decoded_size: int) -> int:
        # §4.2: updates may only open a block, before any field representation.
        if decoded_size:
            raise HPACKDecodingError("dynamic table size update after a field (§4.2)")
        new_size, pos = decode_integer(data, pos, 5)
        if new_size > self._allowed:
            raise HPACKDecodingError(
                f"table size update to {new_size} exceeds the limit {self._allowed} (§6.3)"
            )
        self._update_required = False
        self._max_size = new_size
        self._evict(new_size)
        self._generation += 1
        return pos

    def _add(self, field: Field) -> None:
        """Insert ``field`` as the newest entry, evicting the oldest to make room (§4.4)."""
        self._generation += 1
        entry_size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if entry_size > self._max_size:
            # §4.4: an entry larger than the table empties it and is not added.
            self._table.clear()
            self._size = 0
            return
        self._table.appendleft(field)
        self._size += entry_size
        if self._size > self._max_size:
            self._evict(self._max_size)

    def _evict(self, limit: int) -> None:
        table = self._table
        while self._size > limit:
            name, value = table.pop()
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD


# Names whose values tend to be unique per message: indexing them would only churn the
# dynamic table and evict the entries that do repeat. (Date is indexed: a server's Date
# repeats for every response within a second.) set-cookie is also kept out of the
# table so one client's cookie is never a compression-oracle target (§7.1).
DEFAULT_NO_INDEX: Final[frozenset[bytes]] = frozenset(
    {
        b":path",
        b"age",
        b"content-length",
        b"content-range",
        b"etag",
        b"expires",
        b"if-modified-since",
        b"if-none-match",
        b"last-modified",
        b"location",
        b"set-cookie",
        b"x-request-id",
    }
)
# Always sent as "never indexed" (§6.2.3, §7.1.3): credentials, and short cookies, which
# are guessable enough for a CRIME-style attack on the compressed size.
_SENSITIVE: Final[frozenset[bytes]] = frozenset({b"authorization", b"proxy-authorization"})
_SHORT_COOKIE: Final = 20

# Precomputed: a static exact match is one octet (§6.1), e.g. (b":status", b"200") is 0x88.
_STATIC_REPS: Final[dict[Field, bytes]] = {}
_STATIC_NAME: Final[dict[bytes, int]] = {}
for _index, _field in enumerate(STATIC_TABLE, start=1):
    _STATIC_REPS.setdefault(_field, bytes((0x80 | _index,)))
    _STATIC_NAME.setdefault(_field[0], _index)


class Encoder:
    """Encode field lists for one peer, with a dynamic table mirroring its decoder's (§2.2).

    ``no_index_names`` replaces DEFAULT_NO_INDEX: the names never added to the dynamic table
    (an empty set indexes everything, as the RFC 7541 Appendix C examples do).
    """

    def __init__(
        self, max_table_size: int = 4096, *, no_index_names: Iterable[bytes] | None = None
    ) -> None:
        self._entries: deque[Field] = deque()  # oldest first, the reverse of index order
        self._size = 0
        self._max_size = max_table_size
        # Entries are numbered by insertion; entry n has index 62 + (_inserted - 1 - n).
        self._inserted = 0
        self._fields: dict[Field, int] = {}
        self._names: dict[bytes, int] = {}
        self._pending_min: int | None = None  # smallest size set since the last block
        self._no_index = DEFAULT_NO_INDEX if no_index_names is None else frozenset(no_index_names)
        # Per Huffman choice: field -> representation, valid until the table next changes.
        self._reps: tuple[dict[object, bytes], dict[object, bytes]] = ({}, {})

    def set_max_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE is now ``size``: adopt it (§4.2, §6.3)."""
        if not 0 <= size <= MAX_INTEGER:
            raise LocalProtocolError(f"invalid header table size {size}")
        if self._pending_min is None and size == self._max_size:
            return
        self._pending_min = size if self._pending_min is None else min(self._pending_min, size)
        self._max_size = size
        # Evict now to the smallest size the decoder will pass through.
        self._evict(self._pending_min)
        self._table_changed()

    def encode(self, headers: Iterable[object], huffman: bool = True) -> bytes:
        """Encode one field block; ``huffman`` allows Huffman-coded strings where not longer.

        Each field is a ``HeaderField``: it may be (name, value, True) to send it "never
        indexed" (§6.2.3); authorization and short cookie fields always are. Typed ``object``
        because anything else is refused here, with a LocalProtocolError, not by the
        run-time type checks of a compiled build.
        """
        out: list[bytes] = []
        if self._pending_min is not None:
            out.append(self._size_updates())
        reps = self._reps[huffman]
        for field in headers:
            try:
                rep = reps.get(field)
            except TypeError:  # unhashable, so not a tuple of bytes: _unpack says why
                rep = None
            if rep is None:
                rep = self._encode_field(field, huffman)
            out.append(rep)
        return b"".join(out)

    def _size_updates(self) -> bytes:
        # §4.2: if the size shrank and grew again, signal the minimum and then the final size.
        smallest = self._pending_min
        assert smallest is not None
        self._pending_min = None
        first = encode_integer(smallest, 5, 0x20)
        if smallest == self._max_size:
            return first
        return first + encode_integer(self._max_size, 5, 0x20)

    def _encode_field(self, field: object, huffman_ok: bool) -> bytes:
        name, value, sensitive = _unpack(field)
        if sensitive or name in _SENSITIVE or (name == b"cookie" and len(value) < _SHORT_COOKIE):
            return self._literal(name, value, 0x10, huffman_ok)[0]  # §6.2.3, never cached
        key = (name, value)
        rep = _STATIC_REPS.get(key)
        if rep is None and key in self._fields:
            rep = encode_integer(self._dynamic_index(self._fields[key]), 7, 0x80)  # §6.1
        if rep is None:
            if self._should_index(name, value):
                rep = self._literal(name, value, 0x40, huffman_ok)[0]  # §6.2.1
                self._add(key)
                return rep
            rep, cacheable = self._literal(name, value, 0x00, huffman_ok)  # §6.2.2
            if not cacheable:
                return rep
        self._remember(field, rep, huffman_ok)
        return rep

    def _should_index(self, name: bytes, value: bytes) -> bool:
        # An entry over 3/4 of the table would evict nearly everything else for one field.
        entry_size = len(name) + len(value) + ENTRY_OVERHEAD
        return name not in self._no_index and entry_size * 4 <= self._max_size * 3

    def _remember(self, field: object, rep: bytes, huffman_ok: bool) -> None:
        reps = self._reps[huffman_ok]
        if len(reps) >= _FIELD_CACHE_ENTRIES:
            reps.clear()
        reps[field] = rep

    def _literal(
        self, name: bytes, value: bytes, flags: int, huffman_ok: bool
    ) -> tuple[bytes, bool]:
        """Encode a §6.2 literal; also say whether it is independent of the dynamic table."""
        prefix_bits = 6 if flags == 0x40 else 4
        index = _STATIC_NAME.get(name)
        static_name = index is not None
        if index is None and name in self._names:
            index = self._dynamic_index(self._names[name])
        if index is None:
            head = bytes((flags,)) + encode_string(name, huffman_ok)
        else:
            head = encode_integer(index, prefix_bits, flags)
        return head + encode_string(value, huffman_ok), static_name or index is None

    def _dynamic_index(self, number: int) -> int:
        return _FIRST_DYNAMIC + self._inserted - 1 - number

    def _add(self, field: Field) -> None:
        """Insert ``field`` as the newest entry, as the peer's decoder will (§4.4)."""
        entry_size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        self._fields[field] = self._inserted
        self._names[field[0]] = self._inserted
        self._inserted += 1
        self._entries.append(field)
        self._size += entry_size
        self._evict(self._max_size)
        self._table_changed()

    def _evict(self, limit: int) -> None:
        entries = self._entries
        while self._size > limit:
            number = self._inserted - len(entries)
            field = entries.popleft()
            self._size -= len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if self._fields.get(field) == number:
                del self._fields[field]
            if self._names.get(field[0]) == number:
                del self._names[field[0]]

    def _table_changed(self) -> None:
        # Cached representations may name dynamic indices, which have all shifted.
        self._reps[0].clear()
        self._reps[1].clear()


def _unpack(field: object) -> tuple[bytes, bytes, bool]:
    if not isinstance(field, tuple):
        raise LocalProtocolError(f"a header field is a tuple, not {field!r}")
    if len(field) == 2:
        name, value = field
        sensitive = False
    elif len(field) == 3:
        name, value, flag = field
        sensitive = bool(flag)
    else:
        raise LocalProtocolError(f"a header field is (name, value[, sensitive]), not {field!r}")
    if not isinstance(name, bytes) or not isinstance(value, bytes):
        raise LocalProtocolError(f"header names and values must be bytes: {field!r}")
    return name, value, sensitive
