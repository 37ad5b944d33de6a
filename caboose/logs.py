"""Logging set-up in uvicorn's spirit: the ``caboose.error`` and ``caboose.access`` loggers,
as text (level names coloured on a terminal) or JSON lines, or from a configuration file."""

from __future__ import annotations

import configparser
import importlib
import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caboose.config import Config
from caboose.errors import ConfigError
from caboose.transport.access import AccessEntry

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LOGGERS = ("caboose", "caboose.error", "caboose.access")
_PREFIX = 9  # columns the level name is padded to, as uvicorn's "INFO:     "
_COLOURS = {
    "TRACE": "\x1b[34m",  # blue
    "DEBUG": "\x1b[36m",  # cyan
    "INFO": "\x1b[32m",  # green
    "WARNING": "\x1b[33m",  # yellow
    "ERROR": "\x1b[31m",  # red
    "CRITICAL": "\x1b[1;31m",  # bright red
}
_RESET = "\x1b[0m"


class TextFormatter(logging.Formatter):
    """``INFO      message``: the level name padded, and coloured when ``colours``."""

    def __init__(self, colours: bool = False) -> None:
        super().__init__()
        self.colours = colours

    def formatMessage(self, record: logging.LogRecord) -> str:
        name = record.levelname
        padding = " " * max(_PREFIX - len(name), 0)
        colour = _COLOURS.get(name) if self.colours else None
        prefix = f"{colour}{name}{_RESET}{padding}" if colour else name + padding
        return f"{prefix} {record.message}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message; an access line adds its
    fields (client, method, path, query, protocol, scheme, status, bytes, duration_ms,
    stream, outcome), a failure its traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(record.args, AccessEntry):
            line.update(record.args.fields())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def level_number(level: str) -> int:
    return TRACE if level == "trace" else int(getattr(logging, level.upper()))


def configure(config: Config) -> None:
    """Set logging up as the options say; nothing at all with ``configure_logging=False``.

    Without ``log_config``: one stderr handler on ``caboose`` (text or JSON), which its two
    children propagate to, at ``log_level`` (info by default). With it: the file's set-up,
    and ``log_level`` only if given."""
    if not config.configure_logging:
        return
    if config.log_config is not None:
        load_config_file(config.log_config)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_formatter(config))
        for name in LOGGERS:
            log = logging.getLogger(name)
            log.handlers = [handler] if name == "caboose" else []
            log.propagate = name != "caboose"
    if config.log_level is not None or config.log_config is None:
        level = level_number(config.log_level or "info")
        for name in LOGGERS:
            logging.getLogger(name).setLevel(level)


def _formatter(config: Config) -> logging.Formatter:
    if config.log_format == "json":
        return JSONFormatter()
    colours = config.use_colors
    if colours is None:
        colours = sys.stderr.isatty()
    return TextFormatter(colours)


def load_config_file(path: str) -> None:
    """``--log-config``: dictConfig from JSON or YAML, else fileConfig (INI), as uvicorn.

    Loggers the file does not name stay enabled (``disable_existing_loggers`` defaults to
    false here), so caboose's own are not silenced by a file that leaves them out."""
    suffix = Path(path).suffix.lower()
    try:
        with open(path, encoding="utf-8") as file:
            if suffix == ".json":
                _dict_config(json.load(file))
            elif suffix in (".yaml", ".yml"):
                _dict_config(_yaml().safe_load(file))
            else:
                logging.config.fileConfig(file, disable_existing_loggers=False)
    except ConfigError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise ConfigError(f"--log-config {path}: {exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"--log-config {path}: {exc}") from None
    except Exception as exc:  # a YAML syntax error: yaml.YAMLError, from an optional package
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"--log-config {path}: {exc}") from None
        raise


def _yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise ConfigError("--log-config: a YAML file needs PyYAML: pip install PyYAML") from None


def _dict_config(settings: Any) -> None:
    if not isinstance(settings, dict):
        raise ValueError("the file must hold a mapping (logging.config.dictConfig's schema)")
    settings.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(settings)
