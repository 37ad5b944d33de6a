"""The documentation keeps up with the code: every option and extension is described."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from caboose.cli import build_parser, flag_of, variable_of
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


# docs/migration.md: a table per server ("| uvicorn | caboose | notes |"), a row per flag.
MIGRATION = ROOT / "docs" / "migration.md"
SNAPSHOTS = ROOT / "tests" / "data" / "flags"  # scripts/flag-snapshot.py writes them
PENDING: set[str] = set()  # flags named in the caboose column before they exist (none now)
_CODE = re.compile(r"`([^`]+)`")
_FLAG = re.compile(r"(?<![\w-])--?[A-Za-z0-9][\w-]*")
_VARIABLE = re.compile(r"\bCABOOSE_[A-Z0-9_]+\b")


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The page's tables by their first heading cell, each row as {heading: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            block.append([cell.strip().replace("\\|", "|") for cell in cells])
            continue
        if len(block) > 2:  # heading, --- rule, rows
            heading = block[0]
            found[heading[0]] = [dict(zip(heading, row, strict=True)) for row in block[2:]]
        block = []
    return found


def flags_in(cell: str) -> set[str]:
    """The flags a cell names in code spans (``--reload-dir``, ``-b``, ``--loop uvloop``)."""
    return {flag for span in _CODE.findall(cell) for flag in _FLAG.findall(span)}


def snapshot(tool: str) -> tuple[str, list[str]]:
    """The tool's version line and its flags, as scripts/flag-snapshot.py wrote them."""
    lines = (SNAPSHOTS / f"{tool}.txt").read_text().splitlines()
    return lines[0], [line for line in lines[1:] if line.strip()]


@pytest.mark.parametrize("tool", ["uvicorn", "hypercorn", "gunicorn"])
def test_the_migration_page_has_a_row_for_every_flag(tool: str) -> None:
    header, expected = snapshot(tool)
    name_and_version = header.lstrip("# ").split(":")[0]  # "uvicorn 0.54.0"
    text = MIGRATION.read_text()
    assert name_and_version in text, "the page says which version its table describes"
    rows = tables(text)[tool]
    listed = set().union(*(flags_in(row[tool]) for row in rows))
    assert [flag for flag in expected if flag not in listed] == []
    assert sorted(listed - set(expected)) == [], f"not flags of {tool}"
    assert [row[tool] for row in rows if not row["caboose"].strip("— ")] == [], (
        "each row says what caboose offers, or why nothing"
    )


def test_the_caboose_column_names_real_options() -> None:
    known = set(build_parser()._option_string_actions)  # every spelling, --no-* included
    variables = {variable_of(f) for f in fields(Config)}
    named: set[str] = set()
    for tool in ("uvicorn", "hypercorn", "gunicorn"):
        for row in tables(MIGRATION.read_text())[tool]:
            named |= flags_in(row["caboose"])
            unknown = set(_VARIABLE.findall(row["caboose"])) - variables
            assert unknown == set(), f"{tool} {row[tool]}: no such variable"
    assert sorted(named - known - PENDING) == []
    # A pending flag that exists now must come off the list, so the check above covers it.
    assert sorted(PENDING & known) == []
