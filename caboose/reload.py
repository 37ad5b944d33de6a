"""``--reload``: which changed files count, and the thread that watches for them (watchfiles)."""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caboose.config import Config
from caboose.errors import ConfigError

logger = logging.getLogger("caboose.error")

DEFAULT_INCLUDES = ("*.py",)
# Hidden files (and an editor's dot-swap files), compiled bytecode, vim swap files, and the
# lock/backup files some editors write beside the one being saved.
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*.sw.*", "~*")
# Directories whose files are never the app's source being edited, even when an include
# pattern would match them (``.*`` covers most, unless --reload-include names a dot-file).
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", "node_modules"})
LONGEST_BURST = 2.0  # seconds: a stream of changes that never pauses still reloads this often


def require_watchfiles() -> Any:
    """The watchfiles module, or a one-line error that says how to get it."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigError("--reload needs watchfiles: pip install 'caboose[reload]'") from None
    return watchfiles


def watched_dirs(config: Config) -> list[Path]:
    """--reload-dir's directories, else the --app-dir (the current one by default)."""
    chosen = config.reload_dirs or (config.app_dir,)
    return sorted({Path(directory).resolve() for directory in chosen})


@dataclass(frozen=True)
class ReloadFilter:
    """Does a change to this path call for a reload? Globs match the end of the path
    (``Path.match``, relative to the watched directory); an exclude glob also rules out
    every file below a directory whose name it matches, or below a directory it names. An
    include without wildcards names a file, which counts whatever the exclude globs say."""

    roots: tuple[Path, ...]
    includes: tuple[str, ...]
    excludes: tuple[str, ...]
    excluded_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> ReloadFilter:
        # As in uvicorn, naming a default on the other side drops it: --reload-exclude '*.py'
        # lifts the include '*.py', --reload-include '.*' the exclude '.*'.
        includes = [g for g in DEFAULT_INCLUDES if g not in config.reload_excludes]
        includes += [g for g in config.reload_includes if g not in includes]
        excludes = [g for g in DEFAULT_EXCLUDES if g not in config.reload_includes]
        excludes += [g for g in config.reload_excludes if g not in excludes]
        directories = tuple(Path(g).resolve() for g in config.reload_excludes if Path(g).is_dir())
        return cls(tuple(watched_dirs(config)), tuple(includes), tuple(excludes), directories)

    def __call__(self, path: str | Path) -> bool:
        file = Path(path)
        if any(directory in file.parents for directory in self.excluded_dirs):
            return False
        relative = self._relative(file)
        folders = relative.parts[:-1]
        if any(part in IGNORED_DIRS for part in folders):
            return False
        if any(relative.match(name) for name in self.includes if not _is_glob(name)):
            return True  # a file named outright (--reload-include .env): the excludes yield
        if any(fnmatch.fnmatchcase(part, glob) for part in folders for glob in self.excludes):
            return False
        if not any(relative.match(glob) for glob in self.includes):
            return False
        return not any(relative.match(glob) for glob in self.excludes)

    def _relative(self, file: Path) -> Path:
        """The path below the deepest watched directory holding it: the directories above
        the watched one (a checkout under ~/.local, say) are not the filter's business."""
        holders = [root for root in self.roots if root == file or root in file.parents]
        if not holders:
            return file
        return file.relative_to(max(holders, key=lambda root: len(root.parts)))


def _is_glob(pattern: str) -> bool:
    return any(magic in pattern for magic in "*?[")


def shown(path: str) -> str:
    """A changed path as a developer reads it: relative to the current directory if below."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


class Watcher:
    """Watches the directories in a thread; calls ``on_change()`` once per burst of changes
    (one that pauses for --reload-delay seconds), after logging which files changed."""

    def __init__(self, config: Config, on_change: Callable[[], None]) -> None:
        self.watchfiles = require_watchfiles()
        self.dirs = watched_dirs(config)
        self.accepts = ReloadFilter.from_config(config)
        self.quiet_ms = max(1, round(config.reload_delay * 1000))
        self.on_change = on_change
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="caboose-reload", daemon=True)

    def start(self) -> None:
        logger.info("Will watch for changes in these directories: %s", [str(d) for d in self.dirs])
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()  # watchfiles looks at it every --reload-delay
        self.thread.join(timeout=max(1.0, 2 * self.quiet_ms / 1000))

    def _watch(self) -> None:
        changes_seen = self.watchfiles.watch(
            *self.dirs,
            watch_filter=lambda _change, path: self.accepts(path),
            step=self.quiet_ms,  # a burst ends once this long passes without a change
            debounce=max(self.quiet_ms, round(LONGEST_BURST * 1000)),
            stop_event=self.stopped,
            raise_interrupt=False,
        )
        try:
            for changes in changes_seen:
                paths = sorted({shown(path) for _change, path in changes})
                listed = ", ".join(repr(path) for path in paths)
                logger.warning("WatchFiles detected changes in %s. Reloading...", listed)
                self.on_change()
        except Exception as exc:  # e.g. the system's limit on watches: serve on, say so once
            logger.error("The reloader stopped watching for changes: %s", exc)
