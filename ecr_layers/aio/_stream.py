"""
A layer as an async readable: ``await stream.read(n)``, verified at the end.

The rules are `_stream.StreamCheck`'s (position, size, limit, digest at the end),
the same as the synchronous stream's; the URL, bounds and retries are `AsyncJob`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .._download import Forward
from .._exceptions import ECRError, EndpointUnreachable
from .._stream import StreamCheck
from ._download import AsyncJob, guarded

if TYPE_CHECKING:
    from types import TracebackType

    import aiohttp

    from .._transfer import Pace

#: What ``read()`` without a size, and iteration, ask for at a time.
CHUNK = 256 * 1024
#: Reads at least this large are hashed in a worker thread, not on the event loop.
_HASH_IN_THREAD = 1024 * 1024


class AsyncLayerStream:
    """The bytes of one blob, read on demand from its URL; see `AsyncLayerClient.open_layer`.

    ``read(n)`` returns up to *n* bytes (``b""`` only at a verified end); ``read()``
    the rest.  The read that reaches the end raises `DigestMismatch` when the bytes
    are wrong, and so does every read after it.  Use ``async with``; closing early
    closes the connection.  Iterating yields chunks.
    """

    def __init__(self, job: AsyncJob, algorithm: str) -> None:
        self._job = job
        self._check = StreamCheck(job.layer, algorithm, job.limit)
        self._response: aiohttp.ClientResponse | None = None
        self._url = ""
        self._pace: Pace | None = None
        self._error: ECRError | None = None
        self._end = False
        self._closed = False
        self._returned_at = time.monotonic()

    @property
    def position(self) -> int:
        """Bytes handed to the reader so far."""
        return self._check.position

    @property
    def closed(self) -> bool:
        return self._closed

    async def read(self, size: int | None = -1) -> bytes:
        """Return up to *size* bytes (all that is left if negative or None)."""
        if size is None or size < 0:
            parts = []
            while part := await self.read(CHUNK):
                parts.append(part)
            return b"".join(parts)
        if self._closed:
            raise ValueError("I/O operation on closed stream")
        if self._error is not None:
            raise self._error
        if self._end or size == 0:
            return b""
        # Only a try that moved the stream on resets the count of tries without progress.
        forward = Forward(lambda: self.position, self.position)
        try:
            return await self._job.retrying(lambda: self._read(size), forward)
        except ECRError as exc:
            if not exc.retryable:
                self._error = exc  # no later read ends cleanly
            raise
        finally:
            self._returned_at = time.monotonic()

    async def _read(self, size: int) -> bytes:
        if self._response is None:
            await self._connect()
        elif self._pace is not None:
            # Time the consumer spent between reads is not the connection's slowness.
            self._pace.idle(time.monotonic() - self._returned_at)
        assert self._pace is not None  # set by _connect
        try:
            self._pace.check(0)
            wanted = self._check.wanted(size)
            data = await self._body_read(wanted) if wanted else b""
            self._pace.count(len(data))
            # The end's bytes are handed out only if the whole is right.  A large read is
            # hashed in a thread: the event loop is not the place for it.
            if len(data) >= _HASH_IN_THREAD:
                self._end = await asyncio.to_thread(self._check.passed, memoryview(data))
            else:
                self._end = self._check.passed(memoryview(data))
        except BaseException:
            self._drop()
            raise
        if self._end:
            self._release()
        return data

    async def _body_read(self, size: int) -> bytes:
        assert self._response is not None
        return await guarded(self._response.content.read(size), self._job.layer, self._url)

    async def _connect(self) -> None:
        self._pace = self._job.pace()
        self._response, self._url = await self._job.open(self.position, None)
        try:
            skip = self._check.connected(self._response.status, self._response.headers)
            while skip:  # the host ignored Range: pass what was handed out already
                data = await self._body_read(min(skip, CHUNK))
                if not data:
                    raise EndpointUnreachable("the layer's body ended early", layer=self._job.layer)
                skip -= len(data)
        except BaseException:
            self._drop()
            raise

    def _release(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            self._job.done(response, whole=True)

    def _drop(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            self._job.done(response, whole=False)

    async def close(self) -> None:
        """Close the connection (unverified, if the end was not read)."""
        self._closed = True
        self._drop()

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
