"""--env-file's dialect: KEY=VALUE lines, export, quotes, comments; errors name the line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from caboose import envfile
from caboose.errors import ConfigError

SAMPLE = """
# a comment
PLAIN=value
export EXPORTED=yes
SPACED = around the sign   # and a comment
URL=https://example.test/page#fragment
SINGLE='literal \\n $HOME # not a comment'
DOUBLE="line one\\nline two \\"quoted\\""
EMPTY=
"""


def test_the_dialect() -> None:
    assert envfile.parse(SAMPLE) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "around the sign",
        "URL": "https://example.test/page#fragment",
        "SINGLE": "literal \\n $HOME # not a comment",
        "DOUBLE": 'line one\nline two "quoted"',
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("GOOD=1\nno equals sign\n", "line 2: expected KEY=VALUE"),
        ('OPEN="never closed\n', 'line 1: unterminated " quote'),
        ("TRAILING='a' b\n", "line 1: text after the closing quote"),
        ("1ABC=x\n", "line 1: expected KEY=VALUE"),
    ],
)
def test_a_bad_line_is_named(text: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        envfile.parse(text, "app.env")


def test_the_real_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALREADY", "from the shell")
    monkeypatch.delenv("FRESH", raising=False)
    (tmp_path / ".env").write_text("ALREADY=from the file\nFRESH=from the file\n")
    envfile.load(str(tmp_path / ".env"))
    assert os.environ["ALREADY"] == "from the shell"
    assert os.environ["FRESH"] == "from the file"
    monkeypatch.delenv("FRESH")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--env-file: cannot read .*nothing\.env"):
        envfile.load(str(tmp_path / "nothing.env"))
