"""Reading a file for ``http.response.pathsend`` without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

CHUNK = 256 * 1024  # large enough that the thread hop per chunk is noise


def file_size(path: str) -> int:
    """The size of a regular file, or an error naming the path (ASGI pathsend rules)."""
    if not os.path.isabs(path):
        raise RuntimeError(f"http.response.pathsend needs an absolute path, not {path!r}")
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise RuntimeError(f"http.response.pathsend: cannot read {path!r} ({exc})") from None


async def file_chunks(path: str) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, each read in a worker thread."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()
