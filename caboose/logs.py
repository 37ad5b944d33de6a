"""Logging set-up in uvicorn's spirit: ``caboose.error`` and ``caboose.access`` loggers."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")


def configure(level: str, *, access_log: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(message)s"))
    numeric = TRACE if level == "trace" else getattr(logging, level.upper())
    for name in ("caboose", "caboose.error", "caboose.access"):
        log = logging.getLogger(name)
        log.handlers = [handler] if name == "caboose" else []
        log.setLevel(numeric)
        log.propagate = name != "caboose"
    if not access_log:
        logging.getLogger("caboose.access").setLevel(logging.CRITICAL + 1)
