"""The documentation keeps up with the code: every option and extension is described."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from caboose.cli import flag_of
from caboose.config import Config

ROOT = Path(__file__).resolve().parents[1]


def test_every_option_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    # A row starts with the flag itself: "`--header`" is not "`--header-read-timeout`".
    rows = {line.split("`")[1].split()[0] for line in text.splitlines() if line.startswith("| `")}
    missing = [flag_of(f) for f in fields(Config) if flag_of(f) not in rows]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("## ", 1)[0]
    assert "make run" in head and "make test" in head


def test_extensions_are_documented() -> None:
    assert "http.request.trailers" in (ROOT / "docs" / "request-trailers.md").read_text()
    assert "http.response.trailers" in (ROOT / "docs" / "trailers.md").read_text()
