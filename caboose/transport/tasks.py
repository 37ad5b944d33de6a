"""Start application tasks, eagerly where Python supports it (3.12+)."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any

TaskStarter = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


def task_starter(loop: asyncio.AbstractEventLoop) -> TaskStarter:
    """How this loop should start an application task.

    Python 3.12's eager start runs the coroutine at once until it first suspends, with the
    task already current (so anyio and Starlette see a task): a hello-world app finishes
    without ever being scheduled. Python 3.11 has no safe equivalent: it schedules as usual.
    """
    if sys.version_info >= (3, 12):
        return functools.partial(asyncio.Task, loop=loop, eager_start=True)
    return loop.create_task
