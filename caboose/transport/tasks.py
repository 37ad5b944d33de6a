"""Start application tasks, eagerly where Python supports it (3.12+)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

# Python 3.12's eager start runs the coroutine at once until it first suspends, with the task
# already current (so anyio/Starlette see a task): a hello-world app finishes without ever
# being scheduled. Python 3.11 has no safe equivalent, so it schedules as usual.
_EAGER = sys.version_info >= (3, 12)


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    if _EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)
