"""HPACK interop: the public hpack-test-case stories, decoded and re-encoded (with a peer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hpack
import pytest

from caboose.core.h2.hpack import Decoder, Encoder
from tests.testdata import hpack_test_case

STORIES = hpack_test_case()
ENCODED = sorted(
    path
    for folder in STORIES.iterdir()
    if folder.is_dir() and folder.name != "raw-data"
    for path in folder.glob("story_*.json")
)
RAW = sorted((STORIES / "raw-data").glob("story_*.json"))

Fields = list[tuple[bytes, bytes]]


def _story_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _cases(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    return cases


def _headers(case: dict[str, Any]) -> Fields:
    return [(k.encode(), v.encode()) for item in case["headers"] for k, v in item.items()]


def test_all_story_folders_are_present() -> None:
    folders = {path.parent.name for path in ENCODED}
    assert {
        "go-hpack",
        "nghttp2",
        "nghttp2-change-table-size",
        "swift-nio-hpack-huffman",
    } <= folders
    assert len(ENCODED) >= 150
    assert len(RAW) >= 30


@pytest.mark.parametrize("path", ENCODED, ids=_story_id)
def test_decode_story(path: Path) -> None:
    decoder = Decoder()
    for case in _cases(path):
        # The size we announced in SETTINGS and saw acknowledged just before this block.
        if case.get("header_table_size") is not None:
            decoder.max_allowed_table_size = case["header_table_size"]
        assert decoder.decode(bytes.fromhex(case["wire"])) == _headers(case), case["seqno"]


def _reencode(path: Path, huffman: bool, table_size: int) -> None:
    encoder = Encoder(max_table_size=table_size)
    ours = Decoder(max_table_size=table_size)
    peer = hpack.Decoder()
    peer.max_allowed_table_size = peer.header_table_size = table_size
    for case in _cases(path):
        headers = _headers(case)
        wire = encoder.encode(headers, huffman=huffman)
        assert ours.decode(wire) == headers, case["seqno"]
        assert [tuple(field) for field in peer.decode(wire, raw=True)] == headers, case["seqno"]


@pytest.mark.parametrize("path", RAW, ids=_story_id)
def test_reencode_raw_story_with_huffman(path: Path) -> None:
    _reencode(path, huffman=True, table_size=4096)


@pytest.mark.parametrize("path", RAW, ids=_story_id)
def test_reencode_raw_story_plain_small_table(path: Path) -> None:
    _reencode(path, huffman=False, table_size=256)


@pytest.mark.parametrize("path", RAW[::4], ids=_story_id)
def test_reencode_raw_story_with_table_size_changes(path: Path) -> None:
    encoder = Encoder()
    ours = Decoder()
    peer = hpack.Decoder()
    sizes = [4096, 0, 512, 2048, 100, 4096, 8192, 1024]
    for number, case in enumerate(_cases(path)):
        if number % 7 == 3:
            # Two SETTINGS changes before the next block (the second is the one that holds):
            # both decoders accept it, our encoder adopts it.
            step = number // 7
            encoder.set_max_table_size(sizes[step % len(sizes)])
            size = sizes[(step + 1) % len(sizes)]
            encoder.set_max_table_size(size)
            ours.max_allowed_table_size = peer.max_allowed_table_size = size
        headers = _headers(case)
        wire = encoder.encode(headers)
        assert ours.decode(wire) == headers, case["seqno"]
        assert [tuple(field) for field in peer.decode(wire, raw=True)] == headers, case["seqno"]
        assert ours.dynamic_table == [
            (bytes(n), bytes(v)) for n, v in peer.header_table.dynamic_entries
        ]
