"""Command line: argparse generated from Config's field metadata; errors are one line."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import Field, fields
from typing import Any, NoReturn

from caboose import __version__, build
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

_PYTHON = ".".join(map(str, sys.version_info[:3]))  # --version names it, and the build


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


class _Repeat(argparse.Action):
    """A repeatable option: each use adds one value. Used at all, it replaces its default
    (which may have come from the environment) instead of adding to it."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        current = getattr(namespace, self.dest)
        if current is self.default:  # argparse put the default there: this is the first use
            current = ()
        setattr(namespace, self.dest, (*current, values))


def flag_of(option: Field[Any]) -> str:
    """The command-line flag of a Config field (``reload_dirs`` -> ``--reload-dir``)."""
    return str(option.metadata.get("flag") or "--" + option.name.replace("_", "-"))


def variable_of(option: Field[Any]) -> str:
    """The environment variable of a Config field: its flag's (``CABOOSE_RELOAD_DIR``)."""
    return "CABOOSE_" + flag_of(option)[2:].replace("-", "_").upper()


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
    version = f"caboose {__version__}, {build.describe()}, Python {_PYTHON}"
    parser.add_argument("--version", action="version", version=version)
    groups: dict[str, Any] = {}
    defaults = Config()
    for option in fields(Config):
        name = option.metadata["group"]
        groups[name] = groups.get(name) or parser.add_argument_group(name)
        _add_option(parser, groups[name], option, getattr(defaults, option.name))
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
    return {f.name: args[f.name] for f in fields(Config) if variable_of(f) in os.environ}


def _add_option(
    parser: argparse.ArgumentParser, group: Any, option: Field[Any], default: Any
) -> None:
    """One Config field as a flag; ``$CABOOSE_<FLAG>`` sets its default, the flag wins."""
    meta = dict(option.metadata)
    del meta["group"]
    flag = flag_of(option)
    meta.pop("flag", None)
    separator = meta.pop("separator", ",")
    kind = str(option.type).replace(" | None", "")
    variable = variable_of(option)
    raw = os.environ.get(variable)
    if kind.startswith("tuple["):  # "tuple[str, ...]": repeatable
        convert = _TYPES[kind.removeprefix("tuple[").partition(",")[0]]
        meta["help"] += f" [${variable}, {separator!r}-separated]"
        if raw is not None:
            default = _items(parser, variable, raw, separator, convert)
        group.add_argument(
            flag, dest=option.name, action=_Repeat, type=convert, default=default, **meta
        )
        return
    meta["help"] += f" [${variable}]"
    if raw is not None:
        # argparse converts a string default with the option's type, naming the option in
        # its error; a switch is read here.
        default = _switch(parser, variable, raw) if kind == "bool" else raw
    if kind == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **meta)
    elif str(option.type).endswith(" | None") and default is not None:
        meta["help"] += " (none: off)"
        group.add_argument(flag, type=_or_none(_TYPES[kind]), default=default, **meta)
    else:
        group.add_argument(flag, type=_TYPES[kind], default=default, **meta)


def _items(
    parser: argparse.ArgumentParser, variable: str, raw: str, separator: str, convert: Any
) -> tuple[Any, ...]:
    """A list option's values from its environment variable; empty items are skipped."""
    try:
        return tuple(convert(item) for item in raw.split(separator) if item.strip())
    except ValueError:
        parser.error(f"${variable}: {raw!r} is not a {separator!r}-separated list of values")


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
