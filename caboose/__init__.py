"""caboose: an ASGI server with correct, fast HTTP/2 and HTTP trailers that reach the wire."""

from __future__ import annotations

__version__ = "0.1.0"

from caboose.config import Config
from caboose.server import run, serve

__all__ = ["Config", "__version__", "run", "serve"]
