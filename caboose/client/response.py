"""What the caller holds: a response's status, fields, body and trailers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import overload

from caboose.client.errors import CloseReason
from caboose.client.stream import ClientStream, Head
from caboose.core.events import Headers


class Fields(Sequence[tuple[str, str]]):
    """A header or trailer section: ``(name, value)`` pairs in order, names lower-case.

    ``fields["grpc-status"]`` is the first value of a name (``KeyError`` without one),
    ``get_all`` every value of it, and ``raw`` the pairs as they came off the wire (bytes).
    """

    __slots__ = ("_pairs", "raw")

    def __init__(self, raw: Headers) -> None:
        self.raw = raw
        self._pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._pairs if key == name]

    @overload
    def __getitem__(self, key: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, key: slice) -> Sequence[tuple[str, str]]: ...

    @overload
    def __getitem__(self, key: str) -> str: ...

    def __getitem__(
        self, key: int | slice | str
    ) -> tuple[str, str] | Sequence[tuple[str, str]] | str:
        if isinstance(key, str):
            value = self.get(key)
            if value is None:
                raise KeyError(key)
            return value
        return self._pairs[key]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return self.get(item) is not None
        return item in self._pairs

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Fields):
            return self._pairs == other._pairs
        if isinstance(other, list):
            return self._pairs == other
        return NotImplemented

    def __repr__(self) -> str:
        return f"Fields({self._pairs!r})"


class Response:
    """A response whose head has arrived; the body is read with ``read()`` or ``async for``.

    ``trailers`` can be read once the body is done (RFC 9110 §6.5: they come after it).
    ``close_reason`` is ``None`` while the exchange runs, then says how it ended.
    """

    def __init__(self, method: str, url: str, stream: ClientStream, head: Head) -> None:
        self.method = method
        self.url = url
        self.status = head.status
        self.headers = Fields(head.headers)
        self.http_version = head.http_version
        self.stream_id = stream.stream_id
        self.informational = [(status, Fields(fields)) for status, fields in stream.informational]
        self._stream = stream
        self._content: bytes | None = None

    @property
    def close_reason(self) -> CloseReason | None:
        return self._stream.reason

    @property
    def trailers(self) -> Fields:
        if self._stream.reason is not CloseReason.ENDED:
            raise RuntimeError("trailers are there once the whole body is read")
        return Fields(self._stream.trailers)

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the body is not read yet: await response.read()")
        return self._content

    def text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding, "replace")

    async def read(self) -> bytes:
        """The whole body (and then the trailers); raises what ended the exchange early."""
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives; each piece is credited back to the server once taken."""
        stream = self._stream
        while (chunk := await stream.next_chunk()) is not None:
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.aiter_bytes()

    async def aclose(self) -> None:
        """Stop here: an unfinished exchange is reset (HTTP/2) or its connection closed."""
        self._stream.abandon()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.http_version} {self.method} {self.url}>"
