"""
The download host over urllib3: one download's URL, its requests and its reads.

`Job` holds what every attempt and range worker of one download shares: the URL
(renewed once for all of them), the bounds (deadline, cancellation) and the open
connections (so that Ctrl-C can shut them).  Reads go straight into the caller's
buffers, one ``recv`` at a time, so the minimum rate and the deadline are checked
between reads.  Errors are `_mapping`'s.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from . import _mapping, _transfer
from ._exceptions import BlobTooLarge, DownloadUrlExpired, ECRError, EndpointTimeout, LayerRef
from ._renewal import Renewal
from ._retry import MadeProgress, RetryBudget, RetryPolicy, call
from ._transfer import Pace
from ._watchdog import Scope, shut, watched_pools

if TYPE_CHECKING:
    import urllib3

    from ._url import LayerUrl

T = TypeVar("T")

#: Connect and per-read timeouts of a download connection, in seconds.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0

#: Bytes of an error answer's body read at most.
ERROR_BODY_LIMIT = 64 * 1024

# What reading a body can raise besides our own errors.
READ_ERRORS = (OSError, http.client.HTTPException, ValueError)


def range_header(start: int, end: int | None) -> dict[str, str]:
    """The headers asking for bytes [start, end) (end None: to the end)."""
    if start or end is not None:
        return {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
    return {}


def check_size(limit: int | None, size: int | None, layer: LayerRef) -> None:
    """Raise `BlobTooLarge` if *size* (announced, or read so far) is over *limit*."""
    if limit is not None and size is not None and size > limit:
        raise BlobTooLarge(
            f"the blob is larger than the {limit} bytes allowed; not read further",
            size=size,
            limit=limit,
            layer=layer,
        )


def time_left(deadline: float | None, layer: LayerRef) -> float:
    """Seconds a request may take: `READ_TIMEOUT`, or what is left before *deadline*."""
    left = READ_TIMEOUT if deadline is None else deadline - time.monotonic()
    if left <= 0:
        raise EndpointTimeout("the download did not finish by its deadline", layer=layer)
    return left


def new_pool() -> urllib3.PoolManager:
    """A client's pool of download connections, whose waits for a response's head are
    bounded by the download's deadline (`_watchdog`)."""
    import urllib3

    # urllib3's own retries off, as botocore's are: one retry layer.
    pool = urllib3.PoolManager(maxsize=16, retries=False)
    pool.pool_classes_by_scheme = watched_pools(
        urllib3.HTTPConnectionPool, urllib3.HTTPSConnectionPool
    )
    return pool


class URLSource(Protocol):
    """What a download needs from the client: one lookup, never retried by itself."""

    def lookup_once(self, layer: LayerRef) -> LayerUrl: ...


@attrs.frozen
class Downloads:
    """What a client lends its downloads: its lookup, its connection pool, its download
    retry policy and its retry budget.  Either client's: the asyncio one's lookup goes
    back to its event loop (`ecr_layers.aio`), so both have one retry budget."""

    source: URLSource
    pool: urllib3.PoolManager
    policy: RetryPolicy
    budget: RetryBudget | None
    #: Stops every download started from here with the rest (a pull's, or an asyncio
    #: task's being cancelled).
    crew: Crew | None = None

    def job(self, layer: LayerRef, *, allow_http: bool = False, limit: int | None = None) -> Job:
        """A new download of *layer*: its deadline starts now."""
        timeout = self.policy.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        job = Job(
            self.source,
            self.pool,
            layer,
            allow_http,
            self.policy,
            self.budget,
            deadline,
            limit=limit,
        )
        if self.crew is not None:
            self.crew.join(job)
        return job


@attrs.define
class Job:
    """One download's shared state: its URL, its bounds, its open connections."""

    source: URLSource
    pool: urllib3.PoolManager
    layer: LayerRef
    allow_http: bool
    policy: RetryPolicy
    budget: RetryBudget | None
    deadline: float | None
    cancelled: threading.Event = attrs.Factory(threading.Event)
    #: The most bytes the blob may have (from its descriptor or a cap), or None.
    limit: int | None = None
    _renewal: Renewal = attrs.field(init=False)
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    _open: set[Any] = attrs.Factory(set)
    # Not _lock: that one is held through a URL renewal, and cancel must not wait for it.
    _open_lock: threading.Lock = attrs.Factory(threading.Lock)
    #: Bounds each request's wait for its head, and its error body, by the deadline.
    _scope: Scope = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._renewal = Renewal(self.layer, self.allow_http)
        self._scope = Scope(self.deadline)

    def url(self) -> LayerUrl:
        """Return a usable URL, renewing it once for every worker that finds it stale."""
        renewal = self._renewal
        url, seen = renewal.current(), renewal.refreshes
        if url is not None:
            return url
        with self._lock:
            url = renewal.current()
            if url is not None:
                return url  # another worker renewed it while this one waited
            renewal.begin(seen)
            try:
                # One API attempt: retrying is the download loop's, never a loop inside it.
                # In the job's scope: bounded by its deadline, and stopped with it.
                with self._scope.current():
                    return renewal.accept(self.source.lookup_once(self.layer))
            except ECRError as exc:
                renewal.failure = exc
                raise

    def use(self, url: LayerUrl) -> None:
        """Start from *url*, looked up beforehand (in a batch), once it passes the URL checks."""
        with self._lock:
            self._renewal.use(url)

    def forget(self, url: LayerUrl) -> None:
        """Drop *url* (the download host said it expired), unless already renewed."""
        with self._lock:
            self._renewal.forget(url)

    def check_size(self, size: int | None) -> None:
        """Raise `BlobTooLarge` if *size* (announced, or read so far) is over the limit."""
        check_size(self.limit, size, self.layer)

    def pace(self) -> Pace:
        # Read at each connection, not bound at import, so that tests can shrink them.
        return Pace(
            self.layer,
            self.deadline,
            self.cancelled,
            floor=_transfer.MIN_RATE,
            window=_transfer.MIN_RATE_WINDOW,
        )

    def retrying(self, attempt: Callable[[], T], progress: MadeProgress | None = None) -> T:
        """Run *attempt* under the download's policy, budget and deadline."""
        return call(
            attempt,
            self.policy,
            budget=self.budget,
            progress=progress,
            deadline=self.deadline,
            stop=self.cancelled,
        )

    def open(self, start: int, end: int | None) -> tuple[urllib3.BaseHTTPResponse, str]:
        """GET bytes [start, end) (end None: to the end); return the response and its URL."""
        import urllib3

        url = self.url()
        headers = range_header(start, end)
        left = time_left(self.deadline, self.layer)
        try:
            with self._scope.current():
                response = self.pool.request(
                    "GET",
                    url.download_url,
                    headers=headers,
                    preload_content=False,
                    decode_content=False,  # the digest is of the bytes as stored
                    # No redirects: a pre-signed URL is fetched where it points (a 3xx is
                    # an error below), and a redirect could not bypass the URL checks.
                    redirect=False,
                    timeout=urllib3.Timeout(
                        connect=min(CONNECT_TIMEOUT, left), read=min(READ_TIMEOUT, left)
                    ),
                )
        except (urllib3.exceptions.HTTPError, *READ_ERRORS) as exc:
            self._stopped_or_late()
            raise _mapping.from_transport_error(exc, self.layer, url.download_url) from exc
        if response.status in (200, 206):
            with self._open_lock:
                self._open.add(response)
            return response, url.download_url
        try:
            # Capped, and bounded by the deadline: a host may send it a byte at a time.
            with self._scope.waiting(_socket_of(response)):
                body = response.read(ERROR_BODY_LIMIT)
        except (urllib3.exceptions.HTTPError, *READ_ERRORS):
            body = b""
        finally:
            # Closed, not reused: what is left of the body may be endless, or hostile.
            response.close()
            response.release_conn()
        self._stopped_or_late()  # a body cut short by the deadline says nothing
        error = _mapping.from_download_answer(
            response.status, body, response.headers, self.layer, url_expired=url.expired()
        )
        if isinstance(error, DownloadUrlExpired):
            self.forget(url)
        raise error

    def _stopped_or_late(self) -> None:
        """After a failed request: raise for a stop or the deadline, which ended it."""
        if self._scope.stopped or self.cancelled.is_set():
            raise KeyboardInterrupt from None
        if self._scope.late or self._scope.expired():
            raise EndpointTimeout("the download did not finish by its deadline", layer=self.layer)

    def done(self, response: urllib3.BaseHTTPResponse, *, whole: bool) -> None:
        """Give the connection back to the pool, or close it if its body was not all read."""
        with self._open_lock:
            self._open.discard(response)
        if not whole:
            response.close()
        response.release_conn()

    def finish(self) -> None:
        """The download is over: its connections are no longer watched for it."""
        self._scope.end()

    def cancel(self) -> None:
        """Stop every worker now: flag them, and wake the ones blocked in a read."""
        self.cancelled.set()
        self._scope.stop()  # and those waiting for a response's head
        with self._open_lock:
            responses = list(self._open)
        for response in responses:
            shut(_socket_of(response))


@attrs.define
class Crew:
    """Downloads that stop together: one failure or Ctrl-C in a pull stops them all."""

    _jobs: list[Job] = attrs.Factory(list)
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    cancelled: threading.Event = attrs.Factory(threading.Event)

    def join(self, job: Job) -> None:
        with self._lock:
            self._jobs.append(job)
        if self.cancelled.is_set():
            job.cancel()

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()

    def check(self) -> None:
        """Stop here if the crew was cancelled: as Ctrl-C would, for the code in between."""
        if self.cancelled.is_set():
            raise KeyboardInterrupt


#: How long a thread that waits for a worker's result blocks at a time.
_WAIT_STEP = 0.1


def result(future: Future[T]) -> T:
    """Return *future*'s result, waiting in steps so that a Ctrl-C is seen at once.

    A signal that lands after Python's last check and before a blocking wait begins
    does not interrupt the wait: its KeyboardInterrupt would come only when the work
    ends, which a slow host can make a read timeout away.  Each step ends by itself,
    and the handler then runs.
    """
    while not future.done():
        wait((future,), timeout=_WAIT_STEP)
    return future.result()


def _socket_of(response: urllib3.BaseHTTPResponse) -> Any:
    return getattr(getattr(response, "connection", None), "sock", None)


class _OneRecv:
    """Makes http.client's ``readinto`` return after one ``recv``, as ``read1`` does.

    Its own fills the whole buffer, so a trickling host could hold one read for
    hours: with one ``recv`` per read, the minimum-rate and deadline checks run
    between reads, while http.client still counts Content-Length and chunks.
    """

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def readinto(self, buffer: memoryview) -> int:
        return int(self._fp.readinto1(buffer))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _Chunked:
    """One ``read1`` per read, copied into the buffer: for chunked bodies, whose
    http.client ``readinto`` takes a short read for the end of the body."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readinto(self, buffer: memoryview) -> int:
        data = self._raw.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def body(response: urllib3.BaseHTTPResponse) -> Any:
    """Return what to ``readinto`` from: one ``recv`` at most per call, into our buffer."""
    # urllib3's own readinto reads into a new bytes object and copies; the
    # http.client response underneath reads straight into our buffer.
    raw = getattr(response, "_fp", None)
    if raw is None or not hasattr(raw, "readinto"):
        return response
    if getattr(raw, "chunked", False):
        return _Chunked(raw)  # rare for a blob store: one copy per read is fine
    if getattr(raw, "fp", None) is not None and not isinstance(raw.fp, _OneRecv):
        raw.fp = _OneRecv(raw.fp)
    return raw


@attrs.define
class Reader:
    """Reads a body into buffers, counting as it goes, so a failure loses no count."""

    body: Any
    pace: Pace
    #: Bytes read into the current buffer so far.
    count: int = 0

    def fill(self, view: memoryview) -> int:
        """Fill *view* until it is full or the body ends; return the bytes read."""
        self.count = 0
        size = len(view)
        while self.count < size:
            got = self.body.readinto(view[self.count :])
            if not got:
                break
            self.count += got
            self.pace.check(got)
        return self.count


def read(job: Job, reader: Reader, view: memoryview, url: str) -> int:
    try:
        return reader.fill(view)
    except READ_ERRORS as exc:
        if job.cancelled.is_set():
            raise KeyboardInterrupt from None  # a socket we shut down ourselves
        raise _mapping.from_transport_error(exc, job.layer, url) from exc
