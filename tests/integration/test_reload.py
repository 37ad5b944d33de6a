"""``--reload``: a real ``caboose --reload`` process serving an app file from a temporary
directory, edited by the test (tests/processes.py starts it and stops it by PID)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import ROOT, Supervised, caboose_process, fetch, until

APP = """
import os
{breakage}
VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if {fail_startup!r}:
                    await send({{"type": "lifespan.startup.failed", "message": "no database"}})
                    return
                await send({{"type": "lifespan.startup.complete"}})
            else:
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""

# What breaks the app, and the line the reloader logs about it.
BREAKAGES = {
    "import": ("import nothing_here", "No module named 'nothing_here'"),
    "syntax": ("def broken(:", "SyntaxError: invalid syntax"),  # the traceback's last line
    "lifespan": ("", "application startup failed: no database"),
}


def write_app(folder: Path, version: str, breakage: str | None = None) -> None:
    code = BREAKAGES[breakage][0] if breakage else ""
    text = APP.format(breakage=code, version=version, fail_startup=breakage == "lifespan")
    (folder / "app.py").write_text(text)


@contextmanager
def reloading(folder: Path, *args: str) -> Iterator[Supervised]:
    with caboose_process(folder, "app:app", "--port", "0", "--reload", *args) as server:
        yield server


def answer(port: int, timeout: float = 5.0) -> tuple[str, int]:
    """(the code's VERSION, the PID of the worker that answered)."""
    version, pid = fetch(port, timeout=timeout).decode().split()
    return version, int(pid)


def serves(server: Supervised, version: str, timeout: float = 10) -> bool:
    """Wait (bounded) until the server answers with this version of the code."""

    def current() -> bool:
        try:
            return answer(server.port, timeout=2)[0] == version
        except (OSError, AssertionError, ValueError):
            return False

    return until(current, timeout)


def test_an_edit_is_answered_by_the_new_code_and_never_by_the_old(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path) as server:
        (old,) = server.ready(1)
        port = server.port
        assert answer(port) == ("one", old)
        log = server.log()
        assert f"Will watch for changes in these directories: ['{tmp_path.resolve()}']" in log
        assert f"Started reloader process [{server.process.pid}] using WatchFiles" in log
        edited = time.monotonic()
        write_app(tmp_path, "two")
        assert until(lambda: server.count("Reloading...") == 1, 10), server.log()
        seen = time.monotonic() - edited
        # The old worker was told to go when the change was seen: this request waits in the
        # backlog for the new worker instead of being answered by the old code.
        time.sleep(0.3)
        version, new = answer(port)
        served = time.monotonic() - edited
        assert version == "two" and new != old, server.log()
        assert "WatchFiles detected changes in 'app.py'. Reloading..." in server.log()
        assert server.ready(1) == {new}  # the old one is gone
        assert {answer(port) for _ in range(5)} == {("two", new)}
        print(f"change seen after {seen:.2f} s, new code answered after {served:.2f} s")


def test_a_burst_of_saves_is_one_reload(tmp_path: Path) -> None:
    write_app(tmp_path, "v0")
    with reloading(tmp_path) as server:
        server.ready(1)
        for version in range(1, 6):  # an editor's save burst, well inside --reload-delay
            write_app(tmp_path, f"v{version}")
            time.sleep(0.03)
        assert serves(server, "v5"), server.log()
        time.sleep(1.0)  # a second reload would show by now
        assert server.count("Reloading...") == 1, server.log()
        assert server.count("Booting worker") == 2, server.log()


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_change_that_breaks_the_app_waits_for_the_fix(tmp_path: Path, breakage: str) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path) as server:
        server.ready(1)
        write_app(tmp_path, "broken", breakage)
        waiting = "failed to start (exit status {}): waiting for a change to reload"
        status = 3 if breakage == "lifespan" else 1
        assert until(lambda: server.count(waiting.format(status)) == 1, 10), server.log()
        assert until(lambda: server.workers() == set(), 5), server.log()  # the old one too
        time.sleep(1.0)  # no crash loop: nothing is retried until the code changes
        assert server.process.poll() is None
        assert server.count(BREAKAGES[breakage][1]) == 1, server.log()  # said once
        assert server.count("Booting worker") == 2, server.log()
        write_app(tmp_path, "fixed")
        assert serves(server, "fixed"), server.log()


def test_a_crash_loop_after_start_waits_for_a_change_too(tmp_path: Path) -> None:
    crashing = "import threading; threading.Timer(0.2, os._exit, (9,)).start()"
    write_app(tmp_path, "one")
    with reloading(tmp_path) as server:
        server.ready(1)
        text = APP.format(breakage=crashing, version="crashing", fail_startup=False)
        (tmp_path / "app.py").write_text(text)  # each worker serves, then dies at once
        said = "crashes in 60 s, waiting for a change to reload"
        # Five crashes, back-offs of 3.1 s in all and six worker starts: far from 40 s, but a
        # loaded machine makes each start slow.
        assert until(lambda: server.count(said) == 1, 40), server.log()
        started = server.count("Booting worker")
        time.sleep(1.0)
        assert server.count("Booting worker") == started  # no more restarts
        assert server.process.poll() is None
        write_app(tmp_path, "fixed")
        assert serves(server, "fixed"), server.log()


def test_a_broken_first_start_waits_and_a_waiting_request_gets_the_fix(tmp_path: Path) -> None:
    write_app(tmp_path, "broken", "import")
    with reloading(tmp_path) as server:
        assert until(lambda: server.count("waiting for a change to reload") == 1), server.log()
        port = server.port  # the sockets stay bound meanwhile
        answers: list[tuple[str, int]] = []
        waiter = threading.Thread(target=lambda: answers.append(answer(port, timeout=15)))
        waiter.start()
        time.sleep(0.5)
        assert server.process.poll() is None and answers == []
        write_app(tmp_path, "fixed")
        waiter.join(15)
        assert [version for version, _ in answers] == ["fixed"], server.log()


def test_reload_include_adds_a_pattern(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path, "--reload-include", "*.txt") as server:
        (old,) = server.ready(1)
        (tmp_path / "notes.txt").write_text("edited")
        assert until(lambda: "changes in 'notes.txt'. Reloading..." in server.log(), 10)
        assert until(lambda: len(server.workers() - {old}) == 1)
        server.ready(1)


def test_reload_exclude_ignores_a_pattern(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path, "--reload-exclude", "scratch_*.py") as server:
        (old,) = server.ready(1)
        (tmp_path / "scratch_1.py").write_text("x = 1\n")
        time.sleep(1.2)  # four times --reload-delay
        assert server.count("Reloading...") == 0 and server.workers() == {old}, server.log()
        write_app(tmp_path, "two")  # the watcher was watching all along
        assert serves(server, "two"), server.log()
        assert "WatchFiles detected changes in 'app.py'. Reloading..." in server.log()


def test_with_workers_a_change_restarts_every_one(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path, "--workers", "2") as server:
        old = server.ready(2)
        assert "with 2 workers" in server.log()
        write_app(tmp_path, "two")
        assert until(lambda: len(server.workers()) == 2 and not server.workers() & old)
        new = server.ready(2)
        answers = {answer(server.port) for _ in range(20)}
        assert {version for version, _ in answers} == {"two"}
        assert {pid for _, pid in answers} <= new


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_reloader_stops_everything(tmp_path: Path, signum: int) -> None:
    write_app(tmp_path, "one")
    with reloading(tmp_path, "--workers", "2") as server:
        server.ready(2)
        pids = {server.process.pid, *server.children()}
        assert len(pids) >= 3
        server.signal(signum)
        assert server.process.wait(10) == 0, server.log()
        assert until(lambda: not any(alive(pid) for pid in pids), 5), server.log()
        assert "Shutting down 2 workers" in server.log()


def caboose(*args: str, cwd: Path, code: str = "pass") -> subprocess.CompletedProcess[str]:
    """The command line, in a process that first runs ``code`` (to hide a module, say)."""
    script = f"import sys\n{code}\nfrom caboose.cli import main\nmain(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=20,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_without_watchfiles_reload_is_one_line_saying_how_to_get_it(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    hidden = "sys.modules['watchfiles'] = None"  # import watchfiles now fails
    result = caboose("app:app", "--port", "0", "--reload", cwd=tmp_path, code=hidden)
    assert last_line(result) == (
        "caboose: error: --reload needs watchfiles: pip install 'caboose[reload]'"
    )


def test_a_reload_dir_that_is_no_directory_is_one_line(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    result = caboose("app:app", "--reload", "--reload-dir", "nowhere", cwd=tmp_path)
    assert last_line(result) == "caboose: error: --reload-dir 'nowhere' is not a directory"


def test_reload_needs_an_import_string(tmp_path: Path) -> None:
    code = "import caboose; caboose.run(lambda scope, receive, send: None, reload=True)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=20
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "caboose.errors.ConfigError: --reload needs the app as an import string (MODULE:ATTRIBUTE)"
    )


def test_reload_options_without_reload_warn_and_serve(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with caboose_process(tmp_path, "app:app", "--port", "0", "--reload-dir", ".") as server:
        assert serves(server, "one"), server.log()
        assert "--reload-dir, --reload-include and --reload-exclude need --reload" in server.log()
        assert "Started reloader process" not in server.log()
