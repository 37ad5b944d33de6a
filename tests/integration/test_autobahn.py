"""A fast subset of the Autobahn|Testsuite (``make autobahn`` runs every group but 9).

The suite needs Python 2.7 (pyenv's on these machines) and installs itself for it on first
use (scripts/autobahn.py); without it the test fails, saying why, rather than skipping.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.serving import ROOT

# Framing, pings, reserved bits and opcodes, fragmentation, UTF-8 (a sample of 6.*), close
# handling, and one compressed case of each kind: about 110 cases in half a minute.
FAST = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.2.*", "6.3.*", "6.4.*", "7.*", "12.1.1", "13.1.1"]


@pytest.mark.timeout(600)
def test_the_fast_subset_has_no_failed_case() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "autobahn.py"), "--cases", *FAST],
        capture_output=True,
        text=True,
        timeout=590,
    )
    summary = result.stdout.strip()
    assert result.returncode == 0, f"{summary}\n{result.stderr[-2000:]}"
    assert "FAILED" not in summary and "cases:" in summary, summary
