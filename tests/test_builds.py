"""The two builds (setup.py, caboose/_impl.py): which one runs, and what forces either.

``make test`` runs the whole suite twice, with CABOOSE_COMPILED=1 and =0; these tests check
the switch itself, in fresh interpreters, whichever of the two runs them.
"""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import caboose
from caboose import _impl

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
HOT = "caboose.core.h2.connection"  # one module setup.py compiles


def _python(code: str, compiled: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CABOOSE_COMPILED"}
    if compiled is not None:
        env["CABOOSE_COMPILED"] = compiled
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_suite_runs_the_build_it_was_asked_for() -> None:
    wanted = os.environ.get("CABOOSE_COMPILED")
    module = sys.modules[HOT]
    if wanted == "1":
        assert caboose.build.compiled and module.__file__ and module.__file__.endswith(SUFFIX)
    elif wanted == "0":
        assert not caboose.build.compiled and module.__file__ and module.__file__.endswith(".py")


def test_zero_imports_every_module_from_its_source() -> None:
    result = _python(
        "import caboose, caboose.core.h2.connection as m, caboose.transport.http2 as t;"
        "print(caboose.build.compiled, m.__file__, t.__file__)",
        "0",
    )
    assert result.returncode == 0, result.stderr
    compiled, *files = result.stdout.split()
    assert compiled == "False" and all(name.endswith(".py") for name in files)


def test_one_runs_the_compiled_build_or_says_why_not() -> None:
    result = _python("import caboose.core.h2.connection as m; print(m.__file__)", "1")
    if _impl._compiled_modules() and _impl._stale(_impl._compiled_modules()) is None:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(SUFFIX)
    else:  # no build here (make test-pure on a fresh clone): a clear error, not pure Python
        assert result.returncode == 1
        assert "ImportError: CABOOSE_COMPILED=1 but " in result.stderr


def test_version_names_the_build_and_the_python() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "caboose", "--version"],
        cwd=ROOT,
        env={**os.environ, "CABOOSE_COMPILED": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    python = ".".join(map(str, sys.version_info[:3]))
    expected = f"caboose {caboose.__version__}, pure Python (CABOOSE_COMPILED=0), Python {python}"
    assert result.stdout.strip() == expected


def test_the_console_script_runs_the_suites_build_from_any_directory(tmp_path: Path) -> None:
    # The compiled modules' shared library must be inside the package: an editable install maps
    # only the package, so a top-level library was found from the project root alone.
    wanted = os.environ.get("CABOOSE_COMPILED")
    env = {k: v for k, v in os.environ.items() if k not in ("CABOOSE_COMPILED", "PYTHONPATH")}
    if wanted is not None:
        env["CABOOSE_COMPILED"] = wanted
    script = Path(sys.executable).parent / "caboose"
    result = subprocess.run(
        [str(script), "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    if wanted == "1":
        assert "compiled with mypyc" in result.stdout
    elif wanted == "0":
        assert "pure Python (CABOOSE_COMPILED=0)" in result.stdout


def test_a_bad_value_is_refused_by_name() -> None:
    with pytest.raises(ImportError, match="CABOOSE_COMPILED must be 0 or 1, not 'yes'"):
        _impl.choose({"CABOOSE_COMPILED": "yes"})


def _package(tmp_path: Path, source_newer: bool, shared: bool = True) -> Path:
    package = tmp_path / "caboose"
    (package / "core").mkdir(parents=True)
    if shared:
        (package / f"{_impl.SHARED}{SUFFIX}").write_bytes(b"")
    source = package / "core" / "h1.py"
    module = package / "core" / f"h1{SUFFIX}"
    source.write_text("")
    module.write_bytes(b"")
    older, newer = 1_700_000_000, 1_700_000_100
    os.utime(source, (newer, newer) if source_newer else (older, older))
    os.utime(module, (older, older) if source_newer else (newer, newer))
    return package


def test_a_fresh_build_is_chosen(tmp_path: Path) -> None:
    build = _impl.choose({}, _package(tmp_path, source_newer=False))
    assert build.compiled and build.modules == 1
    assert build.describe() == "compiled with mypyc (1 modules)"


OTHER_PYTHON = ".cpython-399-x86_64-linux-gnu.so"  # a build for another interpreter


def test_another_pythons_build_beside_ours_is_not_counted(tmp_path: Path) -> None:
    # make test-python builds in place, so one source tree holds a build per Python.
    package = _package(tmp_path, source_newer=False)
    for name in ("h1", "h2", "ws"):
        stale = package / "core" / f"{name}{OTHER_PYTHON}"
        stale.write_bytes(b"")
        os.utime(stale, (1, 1))  # older than every source: stale, were it ours
    build = _impl.choose({}, package)
    assert build.compiled and build.modules == 1


def test_only_another_pythons_build_is_no_build(tmp_path: Path) -> None:
    package = tmp_path / "caboose"
    package.mkdir()
    (package / f"{_impl.SHARED}{OTHER_PYTHON}").write_bytes(b"")
    (package / f"h1{OTHER_PYTHON}").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build = _impl.choose({}, package)
    assert build.describe() == "pure Python (no compiled modules are installed)"


def test_a_stale_build_falls_back_to_pure_python_with_a_warning(tmp_path: Path) -> None:
    package = _package(tmp_path, source_newer=True)
    with pytest.warns(RuntimeWarning, match=r"older than caboose/core/h1.py"):
        build = _impl.choose({}, package)
    assert not build.compiled
    with pytest.raises(ImportError, match=r"CABOOSE_COMPILED=1 but .* rebuild"):
        _impl.choose({"CABOOSE_COMPILED": "1"}, package)


def test_a_build_without_its_shared_library_is_not_chosen(tmp_path: Path) -> None:
    package = _package(tmp_path, source_newer=False, shared=False)
    with pytest.warns(RuntimeWarning, match=r"shared library caboose/_native__mypyc is missing"):
        build = _impl.choose({}, package)
    assert not build.compiled


def test_no_build_is_pure_python_without_a_warning(tmp_path: Path) -> None:
    (tmp_path / "caboose").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build = _impl.choose({}, tmp_path / "caboose")
    assert build.describe() == "pure Python (no compiled modules are installed)"


CANCELLED_REQUEST = """
import asyncio, socket, time
from tests.serving import running

async def app(scope, receive, send):
    await asyncio.sleep(3600)  # cancelled by the shutdown below, inside the compiled bridge

with running(app, timeout_graceful_shutdown=0.2) as server:
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(b"GET / HTTP/1.1\\r\\nhost: localhost\\r\\n\\r\\n")
    time.sleep(0.3)
print("done")
"""


def test_a_cancelled_request_prints_no_deprecation_warning() -> None:
    """On 3.12+, mypyc's coroutines hand a cancellation on with the deprecated three-argument
    throw() (mypyc/mypyc#1214); caboose hushes exactly that warning, or every cancelled
    request of the compiled build would print one. Every other DeprecationWarning shows."""
    env = {k: v for k, v in os.environ.items() if k != "CABOOSE_COMPILED"}
    result = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", CANCELLED_REQUEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "done", result.stderr
    assert "signature of throw() is deprecated" not in result.stderr
