"""Run the Autobahn|Testsuite fuzzing client against a caboose WebSocket echo endpoint.

    python scripts/autobahn.py                 # every case group but 9 (performance)
    python scripts/autobahn.py --cases '1.*' '2.*'

The suite runs only on Python 2.7: the script finds one (pyenv's, or ``python2.7`` on PATH),
installs ``autobahntestsuite`` for it into ``.autobahn/lib`` on first use (``pip install
--target``; the ``zope`` namespace package needs an ``__init__.py`` there), serves the
benchmarks' app (benchmarks/hello.py, whose sockets echo) on 127.0.0.1 (a free port), runs
``wstest -m fuzzingclient`` against it and prints the counts of each verdict. The exit
status is 1 when any case FAILED, or the run did not finish.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hello import app as echo  # noqa: E402
from caboose.config import Config  # noqa: E402
from caboose.server import Server  # noqa: E402

SUITE = ROOT / ".autobahn" / "lib"
ALL_BUT_PERFORMANCE = ["*"]
EXCLUDED = ["9.*"]  # performance: large messages, timed; not a conformance verdict


def python27() -> str:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/2.7*/bin/python"))
    if candidates:
        return candidates[-1]
    found = shutil.which("python2.7")  # not pyenv's shim: it may point at no 2.7
    if found and "shims" not in found:
        return found
    sys.exit("autobahn: no Python 2.7 (pyenv install 2.7.18, or python2.7 on PATH)")


def install(python: str) -> None:
    """Into a private folder, renamed into place when complete: two test runs in one clone
    (two Pythons, say) may install at once, and neither may use the other's half install."""
    if (SUITE / "autobahntestsuite").is_dir():
        return
    print("autobahn: installing autobahntestsuite for Python 2.7 into .autobahn/", flush=True)
    SUITE.parent.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=SUITE.parent, prefix="installing-"))
    try:
        command = [python, "-m", "pip", "install", "-q", "--target", str(scratch)]
        subprocess.run([*command, "autobahntestsuite"], check=True, stderr=subprocess.DEVNULL)
        (scratch / "zope" / "__init__.py").touch()
        try:
            os.rename(scratch, SUITE)
        except OSError:
            if not (SUITE / "autobahntestsuite").is_dir():  # not another run's complete one
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def serve(options: dict[str, Any]) -> tuple[Server, threading.Thread]:
    config = Config(port=0, lifespan="off", access_log=False, log_level="warning", **options)
    server = Server(echo, config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    if not server.started.wait(10):
        sys.exit("autobahn: the server did not start")
    return server, thread


def run_suite(python: str, port: int, cases: list[str], outdir: Path) -> None:
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": "caboose", "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": EXCLUDED,
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    environment = {**os.environ, "PYTHONPATH": str(SUITE)}
    command = [python, "-m", "autobahntestsuite.wstest", "-m", "fuzzingclient", "-s"]
    subprocess.run(
        [*command, str(spec_file)],
        check=True,
        env=environment,
        cwd=outdir,
        stdout=subprocess.DEVNULL,
        timeout=3600,
    )


def verdicts(outdir: Path) -> dict[str, dict[str, Any]]:
    index = json.loads((outdir / "index.json").read_text())
    return dict(index["caboose"])


def worst(result: dict[str, Any]) -> str:
    """A case's verdict: its behaviour, unless the closing behaviour is worse."""
    order = ["OK", "INFORMATIONAL", "NON-STRICT", "UNIMPLEMENTED", "WRONG CODE", "FAILED"]
    found = [result["behavior"], result["behaviorClose"]]
    return max(found, key=lambda verdict: order.index(verdict) if verdict in order else 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=ALL_BUT_PERFORMANCE)
    parser.add_argument("--report", type=Path, help="keep the HTML report in this folder")
    parser.add_argument("--no-deflate", action="store_true", help="serve without compression")
    args = parser.parse_args()
    python = python27()
    install(python)
    options = {"ws_per_message_deflate": not args.no_deflate, "ws_max_size": 64 << 20}
    server, thread = serve(options)
    outdir = Path(tempfile.mkdtemp(prefix="autobahn-"))
    try:
        run_suite(python, server.port, args.cases, outdir)
        results = verdicts(outdir)
    finally:
        server.request_exit()
        thread.join(10)
        if args.report is not None:
            shutil.copytree(outdir, args.report, dirs_exist_ok=True)
        shutil.rmtree(outdir, ignore_errors=True)
    counts = collections.Counter(worst(result) for result in results.values())
    print(f"autobahn: {len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    bad = sorted(
        (case for case, result in results.items() if worst(result) not in _PASSING),
        key=lambda case: [int(part) for part in case.split(".")],
    )
    for case in bad:
        print(f"  {case}: {results[case]['behavior']} / close {results[case]['behaviorClose']}")
    return 1 if bad or not results else 0


_PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}

if __name__ == "__main__":
    sys.exit(main())
