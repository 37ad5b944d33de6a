"""Load an ASGI application from a ``module:attribute`` string, with one-line errors."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from caboose.asgi.http import ASGIApp
from caboose.errors import AppLoadError


def import_from_string(target: str) -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f'import string "{target}" must be in format "<module>:<attribute>"')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise AppLoadError(f'error while importing "{module_name}": {exc}') from exc
        raise AppLoadError(f'could not import module "{module_name}"') from exc
    except Exception as exc:
        raise AppLoadError(f'error while importing "{module_name}": {exc!r}') from exc
    instance: Any = module
    for attr in attrs.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            raise AppLoadError(f'attribute "{attrs}" not found in module "{module_name}"') from None
    return instance


def load_app(app: Any, *, factory: bool = False, app_dir: str = ".") -> ASGIApp:
    """Resolve ``app`` (a callable or an import string) to an ASGI 3 callable."""
    if isinstance(app, str):
        if app_dir not in sys.path:
            sys.path.insert(0, app_dir)
        app = import_from_string(app)
    if factory:
        try:
            app = app()
        except TypeError as exc:
            raise AppLoadError(f"error calling the app factory: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"the application {app!r} is not callable")
    if inspect.isclass(app) or not _accepts_three_args(app):
        raise AppLoadError(
            "the application must be an ASGI 3 callable app(scope, receive, send)"
            + ("; is it a factory? pass --factory" if not factory else "")
        )
    return app  # type: ignore[no-any-return]


def _accepts_three_args(app: Any) -> bool:
    try:
        inspect.signature(app).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature available (builtins, C callables): trust it
        return True
    return True
