"""Logging as the command line and caboose.run() set it up: text with coloured level names,
JSON lines, --log-config files (JSON, YAML, INI), --no-configure-logging, and workers that
log as their supervisor does. Real caboose processes, stopped by their PID."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from caboose.config import Config
from caboose.errors import ConfigError
from caboose.logs import JSONFormatter, TextFormatter
from caboose.transport.access import ATOMS, check_format
from tests.h2peer import settle
from tests.ports import free_port, listening
from tests.processes import ROOT, Supervised, caboose_process

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})
"""


@contextmanager
def caboose(tmp_path: Path, *args: str) -> Iterator[Supervised]:
    (tmp_path / "logapp.py").write_text(APP)
    with caboose_process(tmp_path, "logapp:app", "--port", "0", *args) as server:
        yield server


def test_json_lines_for_the_error_and_the_access_log(tmp_path: Path) -> None:
    with caboose(tmp_path, "--log-format", "json") as server:
        port = server.port
        with httpx.Client(http2=True, http1=False) as client:
            assert client.get(f"http://127.0.0.1:{port}/hi?x=1").status_code == 200
            assert client.get(f"http://127.0.0.1:{port}/boom").status_code == 500
        assert settle(lambda: server.log().count('"caboose.access"') == 2, 10), server.log()
    lines = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert {line["logger"] for line in lines} == {"caboose.error", "caboose.access"}
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["timestamp"])
    hi = next(line for line in lines if line.get("path") == "/hi")
    assert hi["level"] == "INFO" and '"GET /hi?x=1 HTTP/2" 200 5B' in hi["message"]
    expected = {"method": "GET", "query": "x=1", "protocol": "HTTP/2", "status": 200}
    assert {key: hi[key] for key in expected} == expected
    assert (hi["bytes"], hi["stream"], hi["outcome"]) == (5, 1, "completed")
    assert isinstance(hi["duration_ms"], float) and hi["client"].startswith("127.0.0.1:")
    failure = next(line for line in lines if line["level"] == "ERROR")
    assert failure["message"] == "Exception in ASGI application"
    assert "RuntimeError: boom" in failure["exception"]


def test_level_names_are_coloured_when_asked_and_not_on_a_pipe(tmp_path: Path) -> None:
    with caboose(tmp_path, "--use-colors") as server:
        assert server.port
    assert "\x1b[32mINFO\x1b[0m      Started caboose" in server.log()
    with caboose(tmp_path) as plain:  # stderr is a pipe, not a terminal
        assert plain.port
    assert "INFO      Started caboose" in plain.log() and "\x1b[" not in plain.log()


def test_workers_log_as_the_supervisor_does(tmp_path: Path) -> None:
    with caboose(tmp_path, "--workers", "2", "--log-format", "json") as server:
        port = server.port
        assert settle(lambda: server.log().count("Booting worker") == 2, 20)
        assert httpx.get(f"http://127.0.0.1:{port}/w").status_code == 200
        assert settle(lambda: '"path": "/w"' in server.log(), 10), server.log()
    loggers = [json.loads(line)["logger"] for line in server.lines]
    assert loggers.count("caboose.access") == 1


def test_log_config_json_file(tmp_path: Path) -> None:
    logfile = tmp_path / "out.log"
    settings = {
        "version": 1,
        "formatters": {"plain": {"format": "CUSTOM %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(logfile), "formatter": "plain"}
        },
        "loggers": {"caboose": {"handlers": ["file"], "level": "INFO"}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(settings))
    with caboose(tmp_path, "--log-config", "logging.json") as server:
        # The file has the log, not stderr.
        assert settle(lambda: logfile.exists() and "running on" in logfile.read_text(), 15)
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", logfile.read_text())
        assert found
        port = int(found.group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/file").status_code == 200
        assert settle(lambda: "/file" in logfile.read_text(), 10)
    text = logfile.read_text()
    assert re.search(r'^CUSTOM caboose.access INFO \S+ - "GET /file HTTP/1.1" 200 5B', text, re.M)
    assert "CUSTOM caboose.error INFO Started caboose" in text
    assert server.lines == []  # nothing else was set up on stderr


def test_log_config_ini_file_and_the_log_level_over_it(tmp_path: Path) -> None:
    ini = """
        [loggers]
        keys=root,caboose
        [handlers]
        keys=stderr
        [formatters]
        keys=json
        [logger_root]
        handlers=
        [logger_caboose]
        level=INFO
        handlers=stderr
        qualname=caboose
        propagate=0
        [handler_stderr]
        class=StreamHandler
        args=(sys.stderr,)
        formatter=json
        [formatter_json]
        class=caboose.logs.JSONFormatter
    """
    (tmp_path / "logging.ini").write_text(textwrap.dedent(ini))
    with caboose(tmp_path, "--log-config", "logging.ini") as server:
        port = server.port
        assert httpx.get(f"http://127.0.0.1:{port}/ini").status_code == 200
        assert settle(lambda: '"path": "/ini"' in server.log(), 10), server.log()
    assert all(json.loads(line) for line in server.lines)
    port = free_port()
    with caboose(
        tmp_path, "--log-config", "logging.ini", "--log-level", "warning", "--port", str(port)
    ) as quiet:
        assert settle(lambda: listening(quiet.process.pid, port), 15), quiet.log()
        assert httpx.get(f"http://127.0.0.1:{port}/boom").status_code == 500
        assert settle(lambda: "Exception in ASGI application" in quiet.log(), 10)
    lines = [json.loads(line) for line in quiet.lines]
    assert {line["level"] for line in lines} == {"ERROR"}, lines  # no INFO, no access lines


def test_log_config_yaml_file(tmp_path: Path) -> None:
    yaml = """
        version: 1
        formatters:
          plain: {format: "YAML %(levelname)s %(message)s"}
        handlers:
          stderr: {class: logging.StreamHandler, stream: ext://sys.stderr, formatter: plain}
        loggers:
          caboose: {handlers: [stderr], level: INFO}
    """
    (tmp_path / "logging.yaml").write_text(textwrap.dedent(yaml))
    with caboose(tmp_path, "--log-config", "logging.yaml") as server:
        assert server.port
    assert any(line.startswith("YAML INFO Started caboose") for line in server.lines)


def run_cli(tmp_path: Path, *args: str, hide: str = "") -> subprocess.CompletedProcess[str]:
    """caboose's main() in a fresh interpreter; ``hide``: a module made unimportable."""
    (tmp_path / "logapp.py").write_text(APP)
    code = "import sys; " + (f"sys.modules[{hide!r}] = None; " if hide else "")
    code += "from caboose.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, "logapp:app", "--port", "0", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("bad.json", "{not json", "--log-config bad.json: Expecting property name"),
        ("list.json", "[1, 2]", "--log-config list.json: the file must hold a mapping"),
        ("bad.ini", "[loggers]\nkeys=nobody\n", "--log-config bad.ini: "),
        ("missing.yaml", None, "--log-config missing.yaml: [Errno 2] No such file"),
    ],
)
def test_a_bad_log_config_is_one_line(
    tmp_path: Path, name: str, content: str | None, said: str
) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    result = run_cli(tmp_path, "--log-config", name)
    assert result.returncode == 1
    assert result.stderr.startswith(f"caboose: error: {said}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_yaml_without_pyyaml_names_the_package(tmp_path: Path) -> None:
    (tmp_path / "logging.yml").write_text("version: 1\n")
    result = run_cli(tmp_path, "--log-config", "logging.yml", hide="yaml")
    assert result.returncode == 1
    assert result.stderr == (
        "caboose: error: --log-config: a YAML file needs PyYAML: pip install PyYAML\n"
    )


RUN = """
import logging, sys
import caboose

{setup}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        handlers = logging.getLogger("caboose").handlers
        print("handlers:", [type(h).__name__ for h in handlers], flush=True)
        print("level:", logging.getLogger("caboose.error").level, flush=True)
        logging.getLogger("caboose.error").warning("from the app")
        await send({{"type": "lifespan.startup.failed", "message": "done"}})

try:
    caboose.run(app, port=0, lifespan="on", {options})
except Exception as exc:
    print("stopped:", type(exc).__name__, flush=True)
"""


def run_script(tmp_path: Path, setup: str, options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "script.py").write_text(RUN.format(setup=setup, options=options))
    return subprocess.run(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_run_sets_logging_up_or_leaves_it_alone(tmp_path: Path) -> None:
    mine = 'logging.basicConfig(format="MINE %(name)s %(message)s", level=logging.DEBUG)'
    configured = run_script(tmp_path, mine, "log_format='json'")
    assert "handlers: ['StreamHandler']" in configured.stdout, configured
    assert "level: 20" in configured.stdout  # info, as the command line's default
    warning = next(line for line in configured.stderr.splitlines() if "from the app" in line)
    assert json.loads(warning)["logger"] == "caboose.error"
    assert "stopped: LifespanFailure" in configured.stdout

    alone = run_script(tmp_path, mine, "configure_logging=False")
    assert "handlers: []" in alone.stdout and "level: 0" in alone.stdout, alone
    assert "MINE caboose.error from the app" in alone.stderr  # the app's own set-up
    assert "MINE caboose.error Started caboose" in alone.stderr


# -- unit tests: formatters and the format check ------------------------------------------------


def record(
    level: int = logging.INFO, message: str = "hello %s", *args: object
) -> logging.LogRecord:
    return logging.LogRecord("caboose.error", level, __file__, 1, message, args, None)


def test_text_formatter_pads_and_colours_the_level_name() -> None:
    assert TextFormatter().format(record(logging.INFO, "hi %s", "there")) == "INFO      hi there"
    assert TextFormatter().format(record(logging.CRITICAL, "x")) == "CRITICAL  x"
    coloured = TextFormatter(colours=True).format(record(logging.WARNING, "careful"))
    assert coloured == "\x1b[33mWARNING\x1b[0m   careful"


def test_json_formatter_of_a_plain_record_and_a_failure() -> None:
    line = json.loads(JSONFormatter().format(record(logging.WARNING, "n=%d", 3)))
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "caboose.error", "n=3")
    assert set(line) == {"timestamp", "level", "logger", "message"}
    try:
        raise ValueError("bad")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, "", 1, "oops", (), sys.exc_info())
    assert "ValueError: bad" in json.loads(JSONFormatter().format(failed))["exception"]


@pytest.mark.parametrize(
    ("fmt", "said"),
    [
        ("%(nope)s", "unknown atom(s) 'nope'"),
        ("%(h)s %({x}z)s", "unknown atom(s) '{x}z'"),
        ("%s", "every % must name an atom"),
        ("100% %(s)s", "every % must name an atom"),
        ("%(s)d", "real number is required"),
        ("%(s)", "incomplete format"),
    ],
)
def test_a_bad_access_log_format_names_the_flag(fmt: str, said: str) -> None:
    with pytest.raises(ConfigError, match=r"^--access-log-format: ") as raised:
        Config(access_log_format=fmt)
    assert said in str(raised.value)


def test_every_atom_is_documented_and_accepted() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text().split("## Logging", 1)[1]
    documented = re.findall(r"^\| `%\((\w+)\)s` \|", text, re.M)
    assert sorted(documented) == sorted(ATOMS)
    check_format(" ".join(f"%({atom})s" for atom in ATOMS) + " %({a}i)s %({b}o)s 5%%")
