"""Test data that lives in the repository (tests/data/), so the suite runs from a plain clone.

- ``rfc7541/``: the HPACK static table, Huffman code and Appendix C examples of RFC 7541.
- ``hpack-test-case.tar.xz``: the public hpack-test-case interop stories (MIT licence, see
  LICENSE inside), kept compressed (22 MB of JSON, 0.8 MB packed) and unpacked on first use
  into ``tests/data/hpack-test-case/``, which git ignores.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
RFC7541 = DATA / "rfc7541"
_STORIES_ARCHIVE = DATA / "hpack-test-case.tar.xz"


def hpack_test_case() -> Path:
    """The unpacked hpack-test-case folder (unpacked now if it is not yet)."""
    folder = DATA / "hpack-test-case"
    if not (folder / "LICENSE").exists():
        with tarfile.open(_STORIES_ARCHIVE) as archive:
            archive.extractall(DATA, filter="data")
    return folder
