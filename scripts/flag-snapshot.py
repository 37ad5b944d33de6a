"""Print the command-line flags of another ASGI server, one a line, from its ``--help``.

The snapshots in tests/data/flags/ come from it, and tests/test_docs.py checks that
docs/migration.md has a row for every flag in them. Regenerate one after upgrading the tool:

    python scripts/flag-snapshot.py /work/main/benchmarks/.venv/bin/uvicorn \
        > tests/data/flags/uvicorn.txt
    python scripts/flag-snapshot.py /work/main/benchmarks/.venv/bin/hypercorn \
        > tests/data/flags/hypercorn.txt
    python scripts/flag-snapshot.py .venv/bin/gunicorn > tests/data/flags/gunicorn.txt

The first line is a comment naming the tool and its version (read with importlib.metadata
by the tool's own interpreter, from its script's ``#!`` line); then every spelling of every
option (``-b`` and ``--bind``, ``--access-log`` and ``--no-access-log``) in --help's order.
It reads click's help (uvicorn) and argparse's (hypercorn, gunicorn): an option's line is
indented by two spaces and starts with a dash, and its spellings come before the first run
of two spaces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# A spelling: one or two dashes and a name; metavars (BINDS, [auto|h11]) have no dash.
_SPELLING = re.compile(r"(?<![\w\[|-])--?[A-Za-z0-9][\w-]*")


def flags(help_text: str) -> list[str]:
    """Every option spelling in a --help text, in order, each once."""
    found: list[str] = []
    for line in help_text.splitlines():
        if not re.match(r"  -", line):
            continue  # not an option's first line (usage, description, continuation)
        spec = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        found += [s for s in _SPELLING.findall(spec) if s not in found]
    return found


def version(executable: Path) -> str:
    """The installed version of the package named like the executable."""
    interpreter = executable.read_text().splitlines()[0].removeprefix("#!").strip()
    code = f"import importlib.metadata as m; print(m.version({executable.name!r}))"
    return subprocess.run(
        [interpreter, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: flag-snapshot.py PATH/TO/TOOL")
    executable = Path(sys.argv[1])
    # A wide terminal keeps each option on one line of the help.
    environment = {**os.environ, "COLUMNS": "200"}
    text = subprocess.run(
        [str(executable), "--help"], capture_output=True, text=True, check=True, env=environment
    ).stdout
    print(f"# {executable.name} {version(executable)}: `{executable.name} --help`")
    for flag in flags(text):
        print(flag)


if __name__ == "__main__":
    main()
