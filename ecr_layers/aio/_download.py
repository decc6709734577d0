"""
Verified downloads for asyncio: the synchronous download's rules over aiohttp.

What is shared, and not restated here: the checks before any request and the
verification (`_download.prepare` / `Plan`), the URL renewal rules (`_host.Renewal`),
the host's answers and the transport's failures (`_host.answer_error`, `_mapping`),
ranges, pace and the hashing-and-writing sink (`_transfer`), landing (`_landing`), and
retrying (`_retry.call_async`).  File I/O and hashing stay on the sink's threads; a
blocking hand-over runs in a worker thread, never in the event loop.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .. import _mapping, _transfer
from .._download import Forward, prepare
from .._exceptions import (
    ConfigurationError,
    DownloadUrlExpired,
    ECRError,
    EndpointUnreachable,
    LayerRef,
    TransientError,
)
from .._host import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Renewal,
    answer_error,
    check_size,
    range_header,
    time_left,
)
from .._landing import Landing
from .._retry import MadeProgress, RetryBudget, RetryPolicy, call_async
from .._transfer import Pace, Sink, connections_for, parse_range, ranges

if TYPE_CHECKING:
    import aiohttp

    from .._url import LayerUrl
    from .._validation import Validator

T = TypeVar("T")


@attrs.define
class AsyncJob:
    """One download's shared state in asyncio: its URL (renewed once for all its
    workers), its bounds, and its open responses."""

    lookup_once: Callable[[LayerRef], Awaitable[LayerUrl]]
    session: aiohttp.ClientSession
    layer: LayerRef
    allow_http: bool
    policy: RetryPolicy
    budget: RetryBudget | None
    deadline: float | None
    limit: int | None = None
    _renewal: Renewal = attrs.field(init=False)
    _lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    # Not in the repr: aiohttp's response repr is its signed URL.
    _open: set[Any] = attrs.field(factory=set, repr=False)
    # Pace's cancellation flag; asyncio cancels by CancelledError instead.
    _never: threading.Event = attrs.Factory(threading.Event)

    def __attrs_post_init__(self) -> None:
        self._renewal = Renewal(self.layer, self.allow_http)

    async def url(self) -> LayerUrl:
        """Return a usable URL, renewing it once for every worker that finds it stale."""
        renewal = self._renewal
        url, seen = renewal.current(), renewal.refreshes
        if url is not None:
            return url
        async with self._lock:
            url = renewal.current()
            if url is not None:
                return url
            renewal.begin(seen)
            try:
                return renewal.accept(await self.lookup_once(self.layer))
            except ECRError as exc:
                renewal.failure = exc
                raise

    def use(self, url: LayerUrl) -> None:
        """Start from *url*, looked up beforehand (in a batch), once it passes the URL checks."""
        self._renewal.use(url)

    def pace(self) -> Pace:
        return Pace(
            self.layer,
            self.deadline,
            self._never,
            floor=_transfer.MIN_RATE,
            window=_transfer.MIN_RATE_WINDOW,
        )

    async def retrying(
        self, attempt: Callable[[], Awaitable[T]], progress: MadeProgress | None = None
    ) -> T:
        return await call_async(
            attempt, self.policy, budget=self.budget, progress=progress, deadline=self.deadline
        )

    def check_size(self, size: int | None) -> None:
        check_size(self.limit, size, self.layer)

    async def open(self, start: int, end: int | None) -> tuple[aiohttp.ClientResponse, str]:
        """GET bytes [start, end) (end None: to the end); return the response and its URL."""
        import aiohttp
        from yarl import URL

        url = await self.url()
        left = time_left(self.deadline, self.layer)
        if self.session.closed:  # closed under a download in flight
            raise ConfigurationError("this AsyncLayerClient is closed")
        response = await guarded(
            self.session.get(
                # As signed: requoting would change what the signature covers.
                URL(url.download_url, encoded=True),
                headers=range_header(start, end),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # sock_connect, not connect: aiohttp's connect includes waiting for a
                    # free connection in the pool, which is no failure of the host.
                    sock_connect=min(CONNECT_TIMEOUT, left),
                    sock_read=min(READ_TIMEOUT, left),
                ),
            ),
            self.layer,
            url.download_url,
        )
        if response.status in (200, 206):
            self._open.add(response)
            return response, url.download_url
        try:
            body = await response.content.read(64 * 1024)
        except (aiohttp.ClientError, OSError, ValueError):
            body = b""
        finally:
            response.release()
        error = answer_error(response.status, body, response.headers, self.layer, url)
        if isinstance(error, DownloadUrlExpired):
            self._renewal.forget(url)
        raise error

    def done(self, response: aiohttp.ClientResponse, *, whole: bool) -> None:
        """Give the connection back to the pool, or close it if its body was not all read."""
        self._open.discard(response)
        if whole:
            response.release()
        else:
            response.close()

    def cancel(self) -> None:
        """Close every open response: nothing is left open after a failure or cancellation."""
        for response in list(self._open):
            self.done(response, whole=False)


async def guarded(operation: Awaitable[T], layer: LayerRef, url: str) -> T:
    """Await an aiohttp *operation*; its failure becomes our typed error, alone.

    Raised outside the ``except`` block, so that neither ``__cause__`` nor
    ``__context__`` carries aiohttp's exception: it keeps the URL in objects
    (``yarl.URL``, request info) that no scrubbing of strings reaches.
    """
    import aiohttp

    try:
        return await operation
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # The one error map, which also scrubs *url*'s secrets from *exc*.
        error = _mapping.from_transport_error(exc, layer, url)
    raise error


@attrs.define
class Reader:
    """Reads a body into buffers, counting as it goes, so a failure loses no count."""

    job: AsyncJob
    # Neither shown: aiohttp's response repr is its signed URL.
    response: aiohttp.ClientResponse = attrs.field(repr=False)
    url: str = attrs.field(repr=False)
    pace: Pace = attrs.field(repr=False)
    #: Bytes read into the current buffer so far.
    count: int = 0

    async def fill(self, view: memoryview) -> int:
        """Fill *view* until it is full or the body ends; return the bytes read."""
        self.count = 0
        while self.count < len(view):
            chunk = await guarded(
                self.response.content.read(len(view) - self.count), self.job.layer, self.url
            )
            if not chunk:
                break
            view[self.count : self.count + len(chunk)] = chunk
            self.count += len(chunk)
            self.pace.check(len(chunk))
        return self.count


async def download(  # noqa: PLR0917 (private; the public signature is keyword-only)
    client: Any,
    session: aiohttp.ClientSession,
    validator: Validator,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    repository_name: object,
    layer_digest: object,
    destination: object,
    *,
    registry_id: object,
    progress: _transfer.Progress | None,
    parallel: int | None,
    verify: object,
    allow_http: object,
    url: LayerUrl | None = None,
    max_size: int | None = None,
) -> pathlib.Path:
    """Download a layer to *destination*, verified; see `AsyncLayerClient.download_layer`.

    *url* and *max_size* as for the synchronous `_download.download`.
    """
    plan = await asyncio.to_thread(
        prepare,
        validator,
        repository_name,
        layer_digest,
        destination,
        registry_id=registry_id,
        parallel=parallel,
        verify=verify,
        allow_http=allow_http,
        progress=progress,
    )
    deadline = None if policy.timeout is None else time.monotonic() + policy.timeout
    job = AsyncJob(
        client.lookup_once,
        session,
        plan.layer,
        plan.allow_http,
        policy,
        budget,
        deadline,
        limit=max_size,
    )
    if url is not None:
        job.use(url)
    await job.retrying(job.url)  # unknown layers, bad credentials: before any file exists
    landing = await whole(asyncio.to_thread(Landing, plan.target, plan.layer), Landing.discard)
    try:
        sink = await whole(
            asyncio.to_thread(Sink, landing.file.fileno(), plan.algorithm, progress),
            lambda started: started.close(),
        )
    except BaseException:  # cancelled as the sink started: it is closed, the file goes too
        await asyncio.shield(asyncio.to_thread(landing.discard))
        raise
    try:
        with landing.os_errors():
            await _fetch(job, sink, parallel)
            actual = f"{plan.algorithm}:{await asyncio.to_thread(sink.hexdigest)}"
        plan.check(actual)
        # A cancellation now waits for the commit: the file is then either landed (and
        # the caller told it was cancelled after that) or not, never half-done.
        return await whole(asyncio.to_thread(landing.commit))
    except BaseException:
        job.cancel()
        await asyncio.shield(asyncio.to_thread(_discard, landing, sink))
        raise
    finally:
        await asyncio.shield(asyncio.to_thread(sink.close))


async def _next_chunk(job: AsyncJob, response: aiohttp.ClientResponse, url: str) -> bytes:
    return await guarded(response.content.readany(), job.layer, url)


async def whole(work: Awaitable[T], undo: Callable[[T], object] | None = None) -> T:
    """Await *work* to its end even if the task is cancelled meanwhile (then re-raise the
    cancellation, after *undo* of its result in a thread, if given)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        result = await task
        if undo is not None:
            await asyncio.to_thread(undo, result)
        raise


async def give(sink: Sink, buffer: _transfer.Data, length: int) -> None:
    """Hand *buffer* to the sink; in a thread only if the hand-over would wait."""
    if not sink.offer(buffer, length):
        await asyncio.to_thread(sink.give, buffer, length, ring=False)


def _discard(landing: Landing, sink: Sink) -> None:
    sink.close()
    landing.discard()


async def _fetch(job: AsyncJob, sink: Sink, parallel: int | None) -> None:
    async def run(end: int | None) -> int | None:
        forward = Forward(lambda: sink.done, sink.done)
        return await job.retrying(lambda: _stream(job, sink, end, forward), forward)

    if parallel != 1:
        started = time.monotonic()
        total = await run(_transfer.CHUNK_SIZE)
        if total is None or sink.done >= total:
            return
        connections = connections_for(total, sink.done, time.monotonic() - started, parallel)
        if connections > 1:
            await _parallel(job, sink, total, connections)
            return
    await run(None)


async def _stream(job: AsyncJob, sink: Sink, end: int | None, forward: Forward) -> int | None:
    """Fetch from ``sink.done`` to *end* (or the end) into *sink*; return the total size."""
    start = sink.done
    pace = forward.start(job)
    response, url = await job.open(start, end)
    whole = False
    try:
        total = parse_range(response.status, response.headers, start, job.layer)
        if response.status == 200 and start:
            await asyncio.to_thread(sink.restart)  # may wait on the writer
            start = 0
        if sink.total is None:
            sink.total = total
        job.check_size(total)
        # The chunks as aiohttp received them (a socket read each, up to 256 KiB) go to
        # the sink uncopied, a buffer's worth at a time: a hand-over per chunk costs
        # the loop more queue traffic and thread hops than it spends reading.
        pieces: list[bytes] = []
        held = 0
        try:
            while chunk := await _next_chunk(job, response, url):
                job.check_size(sink.done + held + len(chunk))  # before it goes anywhere
                pace.check(len(chunk))
                pieces.append(chunk)
                held += len(chunk)
                if held >= _transfer.BUFFER_SIZE:
                    batch, size, pieces, held = pieces, held, [], 0
                    await give(sink, batch, size)
        except TransientError:
            # What arrived before the body was cut counts: the next attempt resumes after
            # it.  Not on a cancellation or a final error, which throw the file away.
            if pieces:
                await give(sink, pieces, held)
            raise
        if pieces:
            await give(sink, pieces, held)
        expected = end if end is not None and response.status == 206 else total
        if expected is not None and sink.done < min(expected, total or expected):
            raise EndpointUnreachable("the download body ended early", layer=job.layer)
        whole = True
        return total
    finally:
        job.done(response, whole=whole)


async def _parallel(job: AsyncJob, sink: Sink, total: int, connections: int) -> None:
    """Fetch [sink.done, total) as ranges over *connections*, handed over in order."""
    spans = list(ranges(sink.done, total))
    gate = asyncio.Semaphore(connections)

    async def fetch(start: int, end: int) -> bytearray:
        async with gate:
            return await _fetch_range(job, start, end)

    # At most `connections` in flight and as many waiting to be handed over.
    pending: list[asyncio.Task[bytearray]] = []
    try:
        for span in spans:
            pending.append(asyncio.ensure_future(fetch(*span)))
            if len(pending) >= 2 * connections:
                data = await pending.pop(0)
                await give(sink, data, len(data))
        while pending:
            data = await pending.pop(0)
            await give(sink, data, len(data))
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise


async def _fetch_range(job: AsyncJob, start: int, end: int) -> bytearray:
    """Return bytes [start, end), resuming a cut-short range from where it stopped."""
    buffer = bytearray(end - start)
    view = memoryview(buffer)
    filled = 0
    forward = Forward(lambda: filled, 0)

    async def attempt() -> None:
        nonlocal filled
        pace = forward.start(job)
        response, url = await job.open(start + filled, end)
        whole = False
        try:
            if response.status != 206:
                raise EndpointUnreachable(
                    "the download host stopped honouring byte ranges", layer=job.layer
                )
            parse_range(response.status, response.headers, start + filled, job.layer)
            reader = Reader(job, response, url, pace)
            try:
                await reader.fill(view[filled:])
            finally:
                filled += reader.count
            whole = True
        finally:
            job.done(response, whole=whole)
        if filled != end - start:
            raise EndpointUnreachable("a byte range came back short", layer=job.layer)

    await job.retrying(attempt, forward)
    view.release()
    return buffer
