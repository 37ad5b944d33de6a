"""Load an ASGI application from a ``module:attribute`` string, with one-line errors."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
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
    except Exception as exc:  # the app's module itself failed: show where
        message = f'error while importing "{module_name}": {exc!r}'
        raise AppLoadError(message, _app_traceback(exc)) from exc
    instance: Any = module
    for attr in attrs.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            raise AppLoadError(f'attribute "{attrs}" not found in module "{module_name}"') from None
    return instance


def _app_traceback(exc: BaseException) -> str:
    """The traceback of an exception raised by the app's module, without the frames of the
    import machinery that led there."""
    ours = (__file__, importlib.__file__)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename not in ours and not frame.filename.startswith("<frozen")
    ]
    head = "Traceback (most recent call last):\n"
    return head + "".join(traceback.format_list(frames) + traceback.format_exception_only(exc))


def import_app(app: Any, app_dir: str = ".") -> Any:
    """Import ``app`` if it is a "module:attribute" string (from ``app_dir``); else as is."""
    if isinstance(app, str):
        if app_dir not in sys.path:
            sys.path.insert(0, app_dir)
        return import_from_string(app)
    return app


def load_app(app: Any, *, factory: bool = False, app_dir: str = ".") -> ASGIApp:
    """Resolve ``app`` (a callable or an import string) to an ASGI 3 callable."""
    app = import_app(app, app_dir)
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
