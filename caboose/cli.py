"""Command line: argparse generated from Config's field metadata; errors are one line."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from typing import Any, NoReturn

from caboose import __version__
from caboose.asgi.lifespan import LifespanFailure
from caboose.config import Config
from caboose.errors import AppLoadError, ConfigError

_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float}


def _or_none(convert: Any) -> Any:
    """For an option that may be off (``float | None``): ``none`` turns it off."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error
    return parse


# Exit statuses: 1 for a bad invocation or app, 3 when the app's startup failed (as uvicorn).
EXIT_ERROR = 1
EXIT_STARTUP_FAILED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A mistake on the command line is one line (argparse would print the usage too)."""
        self.exit(2, f"caboose: error: {message} (see caboose --help)\n")


class _EnvironmentParser(_Parser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _switch(parser: argparse.ArgumentParser, variable: str, raw: str) -> bool:
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    parser.error(f"${variable} must be one of 1/0, true/false, yes/no, on/off, not {raw!r}")


def build_parser(parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="caboose",
        description=(
            "Serve an ASGI application over HTTP/1.1 and HTTP/2 (h2c and TLS), "
            "with trailers that reach the wire."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # "--header 5" must not quietly mean --header-read-timeout
    )
    parser.add_argument("app", metavar="APP", help="the application, as MODULE:ATTRIBUTE")
    parser.add_argument("--version", action="version", version=f"caboose {__version__}")
    groups: dict[str, Any] = {}
    defaults = Config()
    for f in fields(Config):
        meta = dict(f.metadata)
        group_name = meta.pop("group")
        group = groups.get(group_name) or parser.add_argument_group(group_name)
        groups[group_name] = group
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = str(f.type).replace(" | None", "")
        variable = "CABOOSE_" + f.name.upper()
        meta["help"] += f" [${variable}]"
        if variable in os.environ:  # the environment sets the default; the flag still wins
            raw = os.environ[variable]
            # argparse converts a string default with the option's type, naming the option
            # in its error; a switch is read here.
            default = _switch(parser, variable, raw) if kind == "bool" else raw
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **meta)
        elif str(f.type).endswith(" | None") and default is not None:
            meta["help"] += " (none: off)"
            group.add_argument(flag, type=_or_none(_TYPES[kind]), default=default, **meta)
        else:
            group.add_argument(flag, type=_TYPES[kind], default=default, **meta)
    return parser


def _load_env_file(argv: list[str] | None) -> None:
    """--env-file first: the variables it sets may be CABOOSE_* options themselves."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--env-file", default=os.environ.get("CABOOSE_ENV_FILE"))
    path = early.parse_known_args(argv)[0].env_file
    if path:
        from caboose import envfile

        try:
            envfile.load(path)
        except ConfigError as exc:
            _die(str(exc), EXIT_ERROR)


def environment_options() -> dict[str, Any]:
    """The options set as ``CABOOSE_<NAME>`` in the environment, converted as the command line
    converts them, for a host that is not our command line (the gunicorn worker); a bad value
    is a ``ConfigError`` naming the variable or the option."""
    args = vars(build_parser(_EnvironmentParser).parse_args(["-"]))
    return {name: value for name, value in args.items() if f"CABOOSE_{name.upper()}" in os.environ}


def main(argv: list[str] | None = None) -> None:
    _load_env_file(argv)
    args = vars(build_parser().parse_args(argv))
    app = args.pop("app")
    from caboose.server import run

    try:
        run(app, **args)
    except AppLoadError as exc:
        if exc.traceback:
            print(exc.traceback, end="", file=sys.stderr)
        _die(str(exc), EXIT_ERROR)
    except ConfigError as exc:  # a bind failure is a ConfigError too
        _die(str(exc), EXIT_ERROR)
    except LifespanFailure as exc:
        _die(f"application startup failed: {exc}", EXIT_STARTUP_FAILED)
    except KeyboardInterrupt:
        pass


def _die(message: str, status: int) -> None:
    print(f"caboose: error: {message}", file=sys.stderr)
    sys.exit(status)
