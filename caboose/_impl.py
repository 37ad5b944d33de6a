"""Which build runs: the modules compiled by mypyc (setup.py), or the same pure-Python sources.

Chosen once, when ``caboose`` is first imported, for the whole package: compiled modules call
each other directly in C, so a mix of compiled and interpreted caboose modules would run two
copies of the same classes. ``CABOOSE_COMPILED`` decides:

- unset: the compiled build when it is installed and up to date, else pure Python;
- ``0``: pure Python, even when compiled modules are installed (they are not imported);
- ``1``: the compiled build, and an ImportError naming the reason when there is none.

A compiled module older than its source (an editable install whose sources changed since the
build) means a stale build: pure Python runs, with a warning, until it is rebuilt.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Build:
    compiled: bool
    modules: int  # how many modules are compiled (0 for pure Python)
    reason: str  # why pure Python runs, when it does

    def describe(self) -> str:
        if self.compiled:
            return f"compiled with mypyc ({self.modules} modules)"
        return f"pure Python ({self.reason})"


SHARED = "_native__mypyc"  # the library the compiled modules share (setup.py's GROUP)


def _extensions(package: Path) -> list[Path]:
    """This interpreter's extension modules: a source tree built for several Pythons holds
    ``ws.cpython-311-...so`` beside ``ws.cpython-312-...so``, and ``*.so`` matches both."""
    suffixes = set(importlib.machinery.EXTENSION_SUFFIXES)
    endings = {suffix.rsplit(".", 1)[1] for suffix in suffixes}  # "so", or "pyd" on Windows
    found = (m for ending in endings for m in package.rglob(f"*.{ending}"))
    return [m for m in found if "." + m.name.split(".", 1)[1] in suffixes]


def _compiled(package: Path) -> tuple[list[Path], bool]:
    """The package's compiled modules for this interpreter (setup.py's COMPILED list), and
    whether the library they share is there too: one walk of the tree for both."""
    modules, shared = [], False
    for module in _extensions(package):
        if module.name.split(".", 1)[0] == SHARED:
            shared = True
        else:
            modules.append(module)
    return sorted(modules), shared


def _compiled_modules(package: Path = PACKAGE) -> list[Path]:
    return _compiled(package)[0]


def _stale(modules: list[Path]) -> Path | None:
    """A source newer than its compiled module, if any."""
    for module in modules:
        source = module.with_name(module.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > module.stat().st_mtime:
            return source
    return None


def choose(environ: Mapping[str, str] = os.environ, package: Path = PACKAGE) -> Build:
    wanted = environ.get("CABOOSE_COMPILED", "").strip()
    if wanted not in ("", "0", "1"):
        raise ImportError(f"CABOOSE_COMPILED must be 0 or 1, not {wanted!r}")
    if wanted == "0":
        return Build(False, 0, "CABOOSE_COMPILED=0")
    modules, shared = _compiled(package)
    reason = ""
    if not modules:
        reason = "no compiled modules are installed"
    elif not shared:
        reason = f"the compiled build's shared library caboose/{SHARED} is missing"
    elif (source := _stale(modules)) is not None:
        reason = f"the compiled build is older than {source.relative_to(package.parent)}"
    if not reason:
        return Build(True, len(modules), "")
    if wanted == "1":
        raise ImportError(f"CABOOSE_COMPILED=1 but {reason}; rebuild: pip install -e .")
    if modules:  # stale: say so; a plain pure install needs no warning
        warnings.warn(f"caboose runs pure Python: {reason}", RuntimeWarning, stacklevel=3)
    return Build(False, 0, reason)


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Finds caboose's submodules from their .py files only, passing over compiled ones."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None or not fullname.startswith("caboose."):
            return None
        for entry in path:
            finder = importlib.machinery.FileFinder(
                entry,
                (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
            )
            spec = finder.find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


# mypyc's coroutines hand an exception on to what they await with the three-argument throw(),
# which Python 3.12 deprecated (mypyc/mypyc#1214): every cancelled request (a client gone, a
# reset stream, a shutdown) warned once. The warning is attributed to whatever Python frame
# runs the loop, not to caboose, so it is matched by its message alone.
THROW_WARNING = r"the \(type, exc, tb\) signature of throw\(\) is deprecated"


def install() -> Build:
    """Choose the build, and make imports follow the choice."""
    build = choose()
    if not build.compiled and _compiled_modules():
        sys.meta_path.insert(0, _SourceOnly())
    if build.compiled and sys.version_info >= (3, 12):
        warnings.filterwarnings("ignore", THROW_WARNING, DeprecationWarning)
    return build
