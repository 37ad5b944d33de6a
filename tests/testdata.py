"""Test data that lives in the repository (tests/data/), so the suite runs from a plain clone.

- ``rfc7541/``: the HPACK static table, Huffman code and Appendix C examples of RFC 7541.
- ``hpack-test-case.tar.xz``: the public hpack-test-case interop stories (MIT licence, see
  LICENSE inside), kept compressed (22 MB of JSON, 0.8 MB packed) and unpacked on first use
  into ``tests/data/hpack-test-case/``, which git ignores.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
RFC7541 = DATA / "rfc7541"
_STORIES_ARCHIVE = DATA / "hpack-test-case.tar.xz"


def hpack_test_case() -> Path:
    """The unpacked hpack-test-case folder (unpacked now if it is not yet)."""
    folder = DATA / "hpack-test-case"
    if not (folder / "LICENSE").exists():
        _unpack(folder)
    return folder


def _unpack(folder: Path) -> None:
    """Unpack into a private folder, then rename it into place in one step: pytest-xdist's
    workers collect at the same time, and one that saw another's half-unpacked folder would
    collect other stories (xdist then stops: "Different tests were collected")."""
    with tempfile.TemporaryDirectory(dir=DATA, prefix=".unpacking-") as scratch:
        with tarfile.open(_STORIES_ARCHIVE) as archive:
            archive.extractall(scratch, filter="data")
        try:
            os.rename(Path(scratch) / folder.name, folder)
        except OSError:
            if not (folder / "LICENSE").exists():  # not another worker's complete copy
                raise RuntimeError(f"{folder} is half unpacked (an older run): delete it") from None
