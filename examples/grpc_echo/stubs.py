"""Generate the Python stubs of proto/echo/echo.proto with grpcio-tools, and import them.

Nothing generated is committed: ``load()`` runs protoc the first time (or when the .proto is
newer than the stubs) and puts the output folder on ``sys.path``, so ``load("echo_pb2")``
(or a plain ``import echo.echo_pb2`` after it) works everywhere. One protoc run writes every
flavour the example and its tests use:

    echo/echo_pb2.py       messages (google protobuf), from protoc itself
    echo/echo_pb2_grpc.py  grpcio client stub and servicer
    echo/echo_grpc.py      grpclib client stub (plugin protoc-gen-grpclib_python)
    echo/echo_connect.py   connectrpc ASGI application and client (protoc-gen-connectrpc)

Run it as a script to generate into another folder: ``python stubs.py OUT_DIR``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE / "proto"
PROTO = PROTO_ROOT / "echo" / "echo.proto"
DEFAULT_OUT = HERE / "gen"

# protoc plugin executables, installed as console scripts beside this interpreter.
PLUGINS = {
    "grpclib_python": "protoc-gen-grpclib_python",
    "connectrpc": "protoc-gen-connectrpc",
}


def plugin_path(script: str) -> str:
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / script
        if candidate.exists():
            return str(candidate)
    found = shutil.which(script)
    if found is None:
        raise RuntimeError(f"{script} not found: pip install grpclib protoc-gen-connectrpc")
    return found


def generate(out: Path) -> None:
    """Run protoc once, writing every stub flavour into ``out``."""
    from grpc_tools import protoc  # a test/example dependency, not one of caboose's

    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        # Google's protobuf messages, which grpcio and grpclib use too (connectrpc's default
        # is its own protobuf-py).
        "--connectrpc_opt=protobuf=google",
    ]
    for name, script in PLUGINS.items():
        args += [f"--plugin=protoc-gen-{name}={plugin_path(script)}", f"--{name}_out={out}"]
    if protoc.main([*args, str(PROTO)]) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    (out / "echo" / "__init__.py").touch()


def generate_in_place(out: Path) -> None:
    """Generate into a folder beside ``out``, then rename it into place in one step: several
    processes (pytest-xdist's workers) may load at once, and none may import stubs that
    another is still writing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-new-"))
    stale = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-old-"))
    try:
        generate(scratch)
        if out.exists() and not is_fresh(out):  # older than the .proto: moved aside
            with contextlib.suppress(OSError):
                os.rename(out, stale / out.name)
        with contextlib.suppress(OSError):  # another process's fresh stubs are there: kept
            os.rename(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def is_fresh(out: Path) -> bool:
    stamp = out / "echo" / "echo_connect.py"
    return stamp.exists() and stamp.stat().st_mtime >= PROTO.stat().st_mtime


def load(flavour: str, out: Path = DEFAULT_OUT) -> ModuleType:
    """Generate into ``out`` unless fresh stubs are there, then import ``echo.<flavour>``
    (``echo_pb2``, ``echo_pb2_grpc``, ``echo_grpc`` or ``echo_connect``)."""
    if not is_fresh(out):
        generate_in_place(out)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module(f"echo.{flavour}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
