"""``--env-file``: read KEY=VALUE lines into the environment (the common .env dialect)."""

from __future__ import annotations

import os
import re

from caboose.errors import ConfigError

# KEY=VALUE, optionally after "export "; the value bare, 'single' or "double" quoted.
_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse(text: str, source: str = "env file") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ConfigError(f"--env-file: {source}, line {number}: expected KEY=VALUE")
        name, raw = match.groups()
        values[name] = _value(raw.strip(), f"{source}, line {number}")
    return values


def _value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        if end < 0:
            raise ConfigError(f"--env-file: {where}: unterminated {quote} quote")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"--env-file: {where}: text after the closing quote")
        inner = raw[1:end]
        if quote == "'":
            return inner  # single quotes: literal
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), inner)
    # Bare: a " #" starts a comment (a "#" inside a word, as in a URL fragment, does not).
    return re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    return -1


def load(path: str) -> dict[str, str]:
    """Set the file's variables that the environment does not already have (as uvicorn's
    python-dotenv does: the real environment wins). Returns what the file says."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"--env-file: cannot read {path} ({exc.strerror})") from None
    values = parse(text, path)
    for name, value in values.items():
        os.environ.setdefault(name, value)
    return values
