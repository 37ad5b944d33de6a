"""``--reload`` without processes: which changes count, what is watched, the checks, and the
watcher thread on a real directory (one callback per burst)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from caboose.config import Config
from caboose.errors import ConfigError
from caboose.reload import ReloadFilter, Watcher, watched_dirs
from tests.h2peer import settle

ROOT = Path("/home/dev/.local/src/project")  # a watched directory below a hidden one


def accepts(relative: str, **options: object) -> bool:
    """Would a change to ROOT/relative reload, with these options?"""
    config = Config(reload_dirs=(), app_dir=str(ROOT), **options)  # type: ignore[arg-type]
    return ReloadFilter.from_config(config)(ROOT / relative)


@pytest.mark.parametrize(
    ("path", "counts"),
    [
        ("app.py", True),
        ("pkg/sub/models.py", True),
        ("notes.txt", False),
        ("app.pyc", False),
        ("pkg/app.pyo", False),
        (".app.py", False),  # hidden, and how some editors save (write a dot-file, rename)
        ("~app.py", False),
        ("app.sw.py", False),
        ("__pycache__/app.py", False),
        (".git/hooks/pre-commit.py", False),
        (".venv/lib/python3.11/site-packages/x.py", False),
        ("venv/lib/x.py", False),
        ("node_modules/x.py", False),
        (".hidden/app.py", False),  # '.*' rules out a directory too
    ],
)
def test_the_defaults(path: str, counts: bool) -> None:
    assert accepts(path) is counts


def test_the_directories_above_the_watched_one_do_not_matter() -> None:
    # ROOT sits below '.local': a dot-directory, but not one of the watched tree's own.
    assert accepts("app.py")
    assert ReloadFilter((ROOT / "src",), ("*.py",), (".*",))(ROOT / "src" / "x.py")


def test_includes_add_to_the_default() -> None:
    assert accepts("notes.txt", reload_includes=("*.txt",))
    assert accepts("app.py", reload_includes=("*.txt",))
    assert accepts("templates/page.html", reload_includes=("templates/*.html",))
    assert not accepts("static/page.html", reload_includes=("templates/*.html",))


def test_excludes_add_to_the_default_and_rule_out_directories() -> None:
    assert not accepts("skip_this.py", reload_excludes=("skip_*.py",))
    assert accepts("keep.py", reload_excludes=("skip_*.py",))
    assert not accepts("build/lib/app.py", reload_excludes=("build",))
    assert not accepts("app.pyc", reload_excludes=("build",))  # the defaults stay


def test_naming_a_default_on_the_other_side_lifts_it() -> None:
    assert accepts(".env", reload_includes=(".env",))  # a file named outright
    assert not accepts(".other", reload_includes=(".env",))
    assert accepts(".other", reload_includes=(".*",))  # the same glob: lifted
    assert not accepts(".git/config.py", reload_includes=(".env",))  # never a .git file
    assert not accepts("app.py", reload_excludes=("*.py",), reload_includes=("*.txt",))
    assert accepts("notes.txt", reload_excludes=("*.py",), reload_includes=("*.txt",))


def test_an_exclude_naming_an_existing_directory_rules_out_its_files(tmp_path: Path) -> None:
    (tmp_path / "generated").mkdir()
    config = Config(app_dir=str(tmp_path), reload_excludes=(str(tmp_path / "generated"),))
    accepts_here = ReloadFilter.from_config(config)
    assert not accepts_here(tmp_path / "generated" / "deep" / "x.py")
    assert accepts_here(tmp_path / "app.py")


def test_the_watched_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert watched_dirs(Config(app_dir=str(tmp_path))) == [tmp_path.resolve()]
    chosen = Config(app_dir=str(tmp_path), reload_dirs=(str(tmp_path / "b"), str(tmp_path / "a")))
    assert watched_dirs(chosen) == [tmp_path / "a", tmp_path / "b"]  # replaces --app-dir


def test_the_checks_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--reload-delay must not be negative"):
        Config(reload_delay=-0.1)
    with pytest.raises(ConfigError, match=r"--reload-dir '.*nowhere' is not a directory"):
        Config(reload=True, reload_dirs=(str(tmp_path / "nowhere"),))
    (tmp_path / "file.py").write_text("")
    with pytest.raises(ConfigError, match="--reload-dir"):
        Config(reload=True, reload_dirs=(str(tmp_path / "file.py"),))
    with pytest.raises(ConfigError, match="--app-dir"):
        Config(reload=True, app_dir=str(tmp_path / "nowhere"))
    Config(reload_dirs=(str(tmp_path / "nowhere"),))  # without --reload it does nothing


def test_a_list_option_takes_a_list_or_one_string_from_python() -> None:
    assert Config(reload_dirs=["a", "b"]).reload_dirs == ("a", "b")  # type: ignore[arg-type]
    assert Config(reload_includes="*.txt").reload_includes == ("*.txt",)  # type: ignore[arg-type]


def test_the_watcher_calls_back_once_per_burst(tmp_path: Path) -> None:
    calls: list[float] = []
    config = Config(reload=True, app_dir=str(tmp_path), reload_delay=0.2)
    watcher = Watcher(config, lambda: calls.append(time.monotonic()))
    watcher.start()
    try:
        time.sleep(0.3)  # its inotify watches are set up in the thread
        (tmp_path / "ignored.txt").write_text("x")
        (tmp_path / "__pycache__").mkdir()
        (tmp_path / "__pycache__" / "app.py").write_text("x")
        time.sleep(0.8)
        assert calls == []  # nothing that counts changed
        for version in range(5):  # an editor's burst: well inside --reload-delay
            (tmp_path / "app.py").write_text(f"VERSION = {version}\n")
            time.sleep(0.03)
        assert settle(lambda: len(calls) == 1, 5)
        time.sleep(0.8)
        assert len(calls) == 1
    finally:
        watcher.stop()
    assert not watcher.thread.is_alive()
