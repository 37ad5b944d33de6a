"""The command line as a user meets it: real processes, one-line errors, exit statuses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port, listening
from tests.serving import run_tool
from tests.tls import issue_certificate

ROOT = Path(__file__).resolve().parents[2]


def caboose(*args: str, cwd: Path = ROOT, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caboose", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def test_bad_import_string() -> None:
    line = one_line_error(caboose("not_an_import_string"))
    assert "<module>:<attribute>" in line


def test_missing_module() -> None:
    assert 'could not import module "nope_nothing"' in one_line_error(caboose("nope_nothing:app"))


def test_missing_attribute() -> None:
    line = one_line_error(caboose("caboose.demo:nothing"))
    assert 'attribute "nothing" not found in module "caboose.demo"' in line


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_an_import_error_comes_before_any_started_line_with_the_apps_traceback(
    tmp_path: Path, workers: list[str]
) -> None:
    (tmp_path / "broken.py").write_text("ratio = 1\nratio = ratio / 0\n")
    result = caboose("broken:app", "--app-dir", str(tmp_path), "--port", "0", *workers)
    assert result.returncode == 1
    said = """error while importing "broken": ZeroDivisionError('division by zero')"""
    assert said in result.stderr
    assert f'File "{tmp_path / "broken.py"}", line 2, in <module>' in result.stderr
    assert "importlib" not in result.stderr  # the app's frames, not the import machinery's
    assert result.stderr.count("Traceback") == 1, result.stderr  # once, even with workers
    assert "Started" not in result.stderr and "running on" not in result.stderr


def test_bad_option_value_names_the_option() -> None:
    result = caboose("caboose.demo:app", "--port", "70000")
    assert "--port" in one_line_error(result)
    result = caboose("caboose.demo:app", "--loop", "tokio")
    assert "--loop" in result.stderr and result.returncode == 2


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(caboose("caboose.demo:app", "--port", str(port)))
    assert f"cannot bind to 127.0.0.1:{port}: address already in use" in line


def test_unreadable_certificate(tmp_path: Path) -> None:
    line = one_line_error(
        caboose("caboose.demo:app", "--port", "0", "--ssl-certfile", str(tmp_path / "none.pem"))
    )
    assert "--ssl-certfile" in line and "none.pem" in line


def test_lifespan_startup_failure_exits_non_zero_with_the_app_message(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'database unreachable'})\n"
    )
    result = caboose("failing:app", "--app-dir", str(tmp_path), "--port", "0")
    assert result.returncode == 3
    assert "database unreachable" in one_line_error(result)


def serve_cli(*args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "caboose", *args, "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait_for_port(process, port):
        return process, port
    process.kill()
    raise AssertionError("server did not start")


def wait_for_port(process: subprocess.Popen[str], port: int, timeout: float = 10) -> bool:
    """Whether ``process`` listens on ``port`` within ``timeout`` (its own socket, not one that
    another test run holds there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if listening(process.pid, port):
            return True
        time.sleep(0.05)
    return False


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    return err


def test_demo_serves_trailers_over_the_cli() -> None:
    process, port = serve_cli("caboose.demo:app")
    try:
        result = run_tool(
            "curl", "-s", "--raw", "-H", "TE: trailers", f"http://127.0.0.1:{port}/trailers"
        )
    finally:
        err = stop(process)
    assert b"\r\n0\r\ncontent-digest: sha-256=:" in result.stdout
    assert process.returncode == 0 and "Shutting down" in err


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) files for 127.0.0.1, from a throwaway trustme CA."""
    files = issue_certificate(tmp_path_factory.mktemp("tls"))
    return files.ca, files.cert, files.key


def test_tls_with_curl_sees_trailers(certificate: tuple[Path, Path, Path]) -> None:
    ca, cert, key = certificate
    process, port = serve_cli(
        "caboose.demo:app", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)
    )
    try:
        result = run_tool(
            "curl",
            "-s",
            "--raw",
            "--http1.1",
            "--cacert",
            str(ca),
            "-H",
            "TE: trailers",
            f"https://127.0.0.1:{port}/trailers",
        )
    finally:
        stop(process)
    assert b"\r\n0\r\ncontent-digest: sha-256=:" in result.stdout


def test_environment_is_not_needed_for_help() -> None:
    result = caboose("--help")
    assert result.returncode == 0 and "--timeout-keep-alive" in result.stdout
    assert os.path.exists(ROOT / "caboose" / "demo.py")


def test_keep_alive_pings_can_be_turned_off_by_name() -> None:
    from caboose.cli import build_parser

    args = build_parser().parse_args(["a:b", "--ws-ping-interval", "none"])
    assert args.ws_ping_interval is None and args.ws_ping_timeout == 20.0
    line = one_line_error(caboose("caboose.demo:app", "--ws-ping-timeout", "soon"))
    assert "--ws-ping-timeout" in line and "'soon'" in line


def test_a_bad_option_is_one_line_and_abbreviations_are_not_guessed() -> None:
    result = caboose("caboose.demo:app", "--header-read", "5")  # not --header-read-timeout
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "caboose: error: unrecognized arguments: --header-read 5 (see caboose --help)"
    ]
    header = caboose("caboose.demo:app", "--header", "5")  # a real option now, checked
    assert one_line_error(header).endswith("--header must be 'Name: value', not '5'")
    renamed = caboose("caboose.demo:app", "--h11-max-incomplete-event-size", "1")
    assert "unrecognized arguments: --h11-max-incomplete-event-size" in renamed.stderr


def test_every_option_has_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from caboose.cli import build_parser

    monkeypatch.setenv("CABOOSE_PORT", "9123")
    monkeypatch.setenv("CABOOSE_HTTP2", "off")
    monkeypatch.setenv("CABOOSE_WS_PING_INTERVAL", "none")
    args = build_parser().parse_args(["a:b"])
    assert (args.port, args.http2, args.ws_ping_interval) == (9123, False, None)
    assert build_parser().parse_args(["a:b", "--port", "9", "--http2"]).port == 9  # flag wins
    env = {**os.environ, "CABOOSE_ACCESS_LOG": "perhaps"}
    result = subprocess.run(
        [sys.executable, "-m", "caboose", "caboose.demo:app"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
        env=env,
    )
    assert result.returncode == 2
    assert "$CABOOSE_ACCESS_LOG must be one of" in one_line_error(result)


def test_env_file_reaches_the_app_and_sets_caboose_options(tmp_path: Path) -> None:
    (tmp_path / "envapp.py").write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200})\n"
        "    await send({'type': 'http.response.body', 'body': os.environ['GREETING'].encode()})\n"
    )
    port = free_port()
    (tmp_path / "app.env").write_text(f"GREETING='hello from .env'\nCABOOSE_PORT={port}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "caboose", "envapp:app", "--env-file", "app.env"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert wait_for_port(process, port), "the port from the env file was not served"
        assert run_tool("curl", "-s", f"http://127.0.0.1:{port}/").stdout == b"hello from .env"
    finally:
        stop(process)


def test_a_bad_env_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("OK=1\nthis is not a variable\n")
    line = one_line_error(caboose("caboose.demo:app", "--env-file", str(tmp_path / "bad.env")))
    assert line.endswith("bad.env, line 2: expected KEY=VALUE")


def test_a_repeatable_option_collects_values_and_the_flag_replaces_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from caboose.cli import build_parser

    monkeypatch.setenv("CABOOSE_RELOAD_DIR", os.pathsep.join(["src", "", "lib"]))
    monkeypatch.setenv("CABOOSE_RELOAD_INCLUDE", "*.html,*.toml")
    parser = build_parser()
    args = parser.parse_args(["a:b"])
    assert args.reload_dirs == ("src", "lib")  # os.pathsep-separated; empty items skipped
    assert args.reload_includes == ("*.html", "*.toml")  # comma-separated
    assert args.reload_excludes == ()
    args = parser.parse_args(["a:b", "--reload-dir", "x", "--reload-dir", "y"])
    assert args.reload_dirs == ("x", "y")  # not src, lib, x, y
    assert parser.parse_args(["a:b"]).reload_dirs == ("src", "lib")  # the default is intact
    assert "--reload-dir DIR" in parser.format_help()


def test_header_adds_response_fields_over_both_protocols() -> None:
    process, port = serve_cli(
        "caboose.demo:app", "--header", "X-Frame-Options: DENY", "--header", "Server: edge"
    )
    try:
        h1 = run_tool("curl", "-sS", "-D-", "-o/dev/null", f"http://127.0.0.1:{port}/")
        h2 = run_tool(
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            "-D-",
            "-o/dev/null",
            f"http://127.0.0.1:{port}/",
        )
    finally:
        stop(process)
    for head in (h1.stdout.lower(), h2.stdout.lower()):
        assert b"x-frame-options: deny" in head
        assert b"server: edge" in head and b"caboose" not in head  # replaced, not doubled
