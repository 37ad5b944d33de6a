"""The HPACK errors (RFC 7541), apart from the modules that raise them.

They live here, in a module the compiled build leaves interpreted, because mypyc cannot
compile a subclass of an interpreted exception that overrides its class attributes (the
compiled class kept the base's ``default_code``, so a malformed block became a
PROTOCOL_ERROR instead of a COMPRESSION_ERROR). hpack.py and huffman.py re-export them.
"""

from __future__ import annotations

from caboose.errors import ErrorCode, RemoteProtocolError


class HuffmanDecodingError(RemoteProtocolError):
    """A Huffman-coded string is malformed (RFC 7541 §5.2): a COMPRESSION_ERROR."""

    default_code = ErrorCode.COMPRESSION_ERROR


class HPACKDecodingError(RemoteProtocolError):
    """The peer sent a malformed field block (RFC 7541 §2.1): a connection COMPRESSION_ERROR."""

    default_code = ErrorCode.COMPRESSION_ERROR


class HeaderListTooLarge(RemoteProtocolError):
    """A decoded field list exceeded max_header_list_size (§4.1 sizes); the table stays in sync.

    The connection survives: it answers with a stream error or a 431 response.
    """

    default_status = 431
