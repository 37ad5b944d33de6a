"""caboose: an ASGI server with correct, fast HTTP/2 and HTTP trailers that reach the wire."""

from __future__ import annotations

__version__ = "0.1.0"

from caboose import _impl

# Before any other caboose module is imported: which build they come from (caboose/_impl.py).
build = _impl.install()

from caboose.config import Config  # noqa: E402
from caboose.server import run, serve  # noqa: E402

__all__ = ["Config", "__version__", "build", "run", "serve"]
