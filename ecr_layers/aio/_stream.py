"""
A layer as an async readable: the synchronous `_stream.LayerStream`, read in a worker
thread a read at a time, so the rules (resume, renewal, bounds, the digest checked
at the end and its error kept) are that stream's, not a copy of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from .._exceptions import InvalidParameter

if TYPE_CHECKING:
    from types import TracebackType

    from .._stream import LayerStream

T = TypeVar("T")

#: What ``read()`` without a size, and iteration, ask for at a time.
CHUNK = 256 * 1024
#: A read in a thread asks for at least this much, the rest kept for the next reads:
#: a small read would cost a thread hop for a few bytes.
HOP = 64 * 1024


class AsyncLayerStream:
    """The bytes of one blob, read on demand from its URL; see `AsyncLayerClient.open_layer`.

    ``read(n)`` returns up to *n* bytes (``b""`` only at a verified end); ``read()``
    the rest.  The read that reaches the end raises `DigestMismatch` when the bytes
    are wrong, and so does every read after it.  Use ``async with``; closing early
    closes the connection, and so does cancelling a read.  Iterating yields chunks.
    """

    def __init__(
        self, raw: LayerStream, run: Callable[[Callable[[], bytes]], Awaitable[bytes]]
    ) -> None:
        self._raw = raw
        self._run = run
        self._held = b""

    @property
    def position(self) -> int:
        """Bytes handed to the reader so far."""
        return self._raw.position - len(self._held)

    @property
    def closed(self) -> bool:
        return self._raw.closed

    async def read(self, size: int | None = -1) -> bytes:
        """Return up to *size* bytes (all that is left if negative or None)."""
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise InvalidParameter(
                f"size must be an int or None, got {size!r:.60}", parameter="size"
            )
        if size is None or size < 0:
            parts = []
            while part := await self.read(CHUNK):
                parts.append(part)
            return b"".join(parts)
        if self._raw.closed:
            raise ValueError("I/O operation on closed stream")
        if not self._held and size:
            try:
                self._held = await self._run(lambda: self._raw.read(max(size, HOP)) or b"")
            except asyncio.CancelledError:
                self._raw.close()  # its connection was shut to stop the read: for good
                raise
        data, self._held = self._held[:size], self._held[size:]
        return data

    async def close(self) -> None:
        """Close the connection (unverified, if the end was not read)."""
        self._held = b""
        self._raw.close()

    async def __aenter__(self) -> AsyncLayerStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read(CHUNK):
            yield chunk
