"""The optional compiled build: caboose's hot modules compiled with mypyc.

pyproject.toml holds the metadata; this file only decides whether ``pip install`` also
compiles. The same sources stay the pure-Python build, so nothing here changes behaviour.

    CABOOSE_COMPILED=1 pip install .   compile, and fail if that cannot be done
    CABOOSE_COMPILED=0 pip install .   pure Python only
    pip install .                      compile when a C compiler and Python's headers are
                                       there, else pure Python (with a warning)

The same variable chooses at run time (caboose/_impl.py), and ``caboose --version`` says which
build is running.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# What the profile of an HTTP/1.1 and HTTP/2 request shows the time going to: the cores, the
# drivers around them and the ASGI bridge. Modules left out stay interpreted for a reason:
# - exception classes that override a class attribute of an interpreted base (mypyc keeps the
#   base's value), which is why the HPACK errors live in caboose/core/h2/errors.py;
# - the package __init__ files, and caboose/_impl.py, which chooses the build at import.
COMPILED = [
    "caboose/core/events.py",
    "caboose/core/headers.py",
    "caboose/core/h1.py",
    "caboose/core/h1_client.py",
    "caboose/core/ws.py",
    "caboose/core/ws_handshake.py",
    "caboose/core/h2/base.py",
    "caboose/core/h2/connection.py",
    "caboose/core/h2/frames.py",
    "caboose/core/h2/hpack.py",
    "caboose/core/h2/hpack_tables.py",
    "caboose/core/h2/huffman.py",
    "caboose/core/h2/limits.py",
    "caboose/core/h2/receive.py",
    "caboose/core/h2/settings.py",
    "caboose/core/h2/stream.py",
    "caboose/core/h2/validation.py",
    "caboose/core/h2/window.py",
    "caboose/transport/access.py",
    "caboose/transport/connection.py",
    "caboose/transport/driver.py",
    "caboose/transport/flow.py",
    "caboose/transport/http1.py",
    "caboose/transport/http2.py",
    "caboose/transport/tasks.py",
    "caboose/asgi/http.py",
    "caboose/asgi/scope.py",
    "caboose/asgi/proxy.py",
    "caboose/asgi/websocket.py",
    "caboose/transport/websocket.py",
    # the client (caboose.client) on the same cores
    "caboose/client/driver.py",
    "caboose/client/http1.py",
    "caboose/client/http2.py",
    "caboose/client/pool.py",
    "caboose/client/stream.py",
]


def _wanted() -> str:
    value = os.environ.get("CABOOSE_COMPILED", "").strip()
    if value not in ("", "0", "1"):
        sys.exit(f"CABOOSE_COMPILED must be 0 (pure Python) or 1 (compiled), not {value!r}")
    return value


def _can_compile() -> str:
    """Why a compiled build cannot be made here, or "" when it can."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler!r} is not on PATH)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers (no Python.h in {include})"
    return ""


GROUP = "caboose._native"


def _extensions() -> list[object]:
    wanted = _wanted()
    if wanted == "0":
        return []
    missing = _can_compile()
    if missing:
        if wanted == "1":
            sys.exit(f"CABOOSE_COMPILED=1 but {missing}")
        print(f"caboose: building pure Python only: {missing}", file=sys.stderr)
        return []
    from mypyc.build import mypycify  # a build requirement (pyproject.toml)

    # opt_level 3 as mypyc's default. The build environment holds setuptools and mypy only:
    # optional dependencies the sources import (prometheus_client for --metrics-port) are
    # missing there, and mypyc types them as Any. The compiled modules share one library, by
    # default a top-level module named after a hash of the list; named caboose._native it is
    # caboose/_native__mypyc*.so, inside the package, where an editable install (which maps
    # only the package) finds it too.
    try:
        return list(
            mypycify(
                ["--ignore-missing-imports", *COMPILED],
                opt_level="3",
                debug_level="0",
                group_name=GROUP,
            )
        )
    except (Exception, SystemExit) as exc:  # mypyc reports a failed type check by exiting
        if wanted == "1":
            raise
        print(f"caboose: building pure Python only: mypyc failed ({exc})", file=sys.stderr)
        return []


setup(ext_modules=_extensions())
