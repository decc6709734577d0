"""
Verified layer downloads over urllib3: one download's URL, requests and reads.

Everything is checked before a request is sent (inputs, digest, destination).  The
bytes are hashed and written as they arrive (`_transfer.Sink`) into a temporary file
that becomes the destination only once verified (`_landing.Landing`).  Faults are
resumed, not restarted: a cut connection continues with ``Range`` from the last
byte received, an expired URL is renewed once for every worker that needs it, and
retrying is `_retry.call`'s, counting only tries that did not move the download
forward, within the policy's deadline.  Errors are `_mapping`'s.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import pathlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from . import _mapping, _transfer
from ._exceptions import (
    DigestMismatch,
    DownloadUrlExpired,
    ECRError,
    EndpointTimeout,
    EndpointUnreachable,
    InvalidParameter,
    LayerRef,
)
from ._landing import Landing, resolve_destination
from ._retry import RetryBudget, RetryPolicy, call
from ._transfer import (
    MAX_CONNECTIONS,
    MAX_DIGEST_LENGTH,
    Pace,
    Progress,
    Sink,
    check_digest,
    connections_for,
    parse_range,
    ranges,
)
from ._url import check_download_url

if TYPE_CHECKING:
    import urllib3

    from ._url import LayerUrl
    from ._validation import Validator

T = TypeVar("T")

#: A URL this close to its expiry is renewed before use, not after a 403.
EXPIRY_MARGIN = 5.0
#: Connect and per-read timeouts of a download connection, in seconds.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0

# What reading a body can raise besides our own errors.
_READ_ERRORS = (OSError, http.client.HTTPException, ValueError)


class URLSource(Protocol):
    """What a download needs from the client: one lookup, never retried by itself."""

    def lookup_once(self, layer: LayerRef) -> LayerUrl: ...


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
    _url: LayerUrl | None = None
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    _refreshes: int = 0
    _failure: ECRError | None = None
    _open: set[Any] = attrs.Factory(set)
    # Not _lock: that one is held through a URL renewal, and cancel must not wait for it.
    _open_lock: threading.Lock = attrs.Factory(threading.Lock)

    def url(self) -> LayerUrl:
        """Return a usable URL, renewing it once for every worker that finds it stale."""
        url, seen = self._url, self._refreshes
        if url is not None and not url.expired(margin=EXPIRY_MARGIN):
            return url
        with self._lock:
            if self._url is not None and not self._url.expired(margin=EXPIRY_MARGIN):
                return self._url  # another worker renewed it while this one waited
            if self._refreshes != seen and self._failure is not None:
                # The renewal this worker waited on failed: that failure is its own too,
                # without a request of its own.
                raise copy.copy(self._failure)
            self._refreshes += 1
            try:
                # One API attempt: retrying is the download loop's, never a loop inside it.
                fresh = self.source.lookup_once(self.layer)
                check_download_url(fresh.download_url, allow_http=self.allow_http, layer=self.layer)
            except ECRError as exc:
                self._failure = exc
                raise
            self._url, self._failure = fresh, None
            return fresh

    def forget(self, url: LayerUrl) -> None:
        """Drop *url* (the download host said it expired), unless already renewed."""
        with self._lock:
            if self._url is url:
                self._url = None

    def pace(self) -> Pace:
        # Read at each connection, not bound at import, so that tests can shrink them.
        return Pace(
            self.layer,
            self.deadline,
            self.cancelled,
            floor=_transfer.MIN_RATE,
            window=_transfer.MIN_RATE_WINDOW,
        )

    def retrying(self, attempt: Callable[[], T], progress: _Forward | None = None) -> T:
        """Run *attempt* under the download's policy, budget and deadline."""
        return call(
            attempt, self.policy, budget=self.budget, progress=progress, deadline=self.deadline
        )

    def open(self, start: int, end: int | None) -> tuple[urllib3.BaseHTTPResponse, str]:
        """GET bytes [start, end) (end None: to the end); return the response and its URL."""
        import urllib3

        url = self.url()
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        left = READ_TIMEOUT if self.deadline is None else self.deadline - time.monotonic()
        if left <= 0:
            raise EndpointTimeout("the download did not finish by its deadline", layer=self.layer)
        try:
            response = self.pool.request(
                "GET",
                url.download_url,
                headers=headers,
                preload_content=False,
                decode_content=False,  # the digest is of the bytes as stored
                # No redirects: a pre-signed URL is fetched where it points (a 3xx is an
                # error below), and a redirect could not bypass the URL checks.
                redirect=False,
                timeout=urllib3.Timeout(
                    connect=min(CONNECT_TIMEOUT, left), read=min(READ_TIMEOUT, left)
                ),
            )
        except (urllib3.exceptions.HTTPError, *_READ_ERRORS) as exc:
            raise _mapping.from_transport_error(exc, self.layer, url.download_url) from exc
        if response.status in (200, 206):
            with self._open_lock:
                self._open.add(response)
            return response, url.download_url
        try:
            body = response.read(64 * 1024)
        except (urllib3.exceptions.HTTPError, *_READ_ERRORS):
            body = b""
        finally:
            response.release_conn()
        error = _mapping.from_download_answer(
            response.status, body, response.headers, self.layer, url_expired=url.expired()
        )
        if isinstance(error, DownloadUrlExpired):
            self.forget(url)
        raise error

    def done(self, response: urllib3.BaseHTTPResponse, *, whole: bool) -> None:
        """Give the connection back to the pool, or close it if its body was not all read."""
        with self._open_lock:
            self._open.discard(response)
        if not whole:
            response.close()
        response.release_conn()

    def cancel(self) -> None:
        """Stop every worker now: flag them, and wake the ones blocked in a read."""
        self.cancelled.set()
        with self._open_lock:
            responses = list(self._open)
        for response in responses:
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


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


def _body(response: urllib3.BaseHTTPResponse) -> Any:
    # urllib3's own readinto reads into a new bytes object and copies; the
    # http.client response underneath reads straight into our buffer.
    raw = getattr(response, "_fp", None)
    if raw is None or not hasattr(raw, "readinto"):
        return response
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


def _read(job: Job, reader: Reader, view: memoryview, url: str) -> int:
    try:
        return reader.fill(view)
    except _READ_ERRORS as exc:
        if job.cancelled.is_set():
            raise KeyboardInterrupt from None  # a socket we shut down ourselves
        raise _mapping.from_transport_error(exc, job.layer, url) from exc


@attrs.define
class _Forward:
    """Tells the retry loop whether a failed try moved a transfer forward."""

    position: Callable[[], int]
    best: int
    pace: Pace | None = None

    def __call__(self, error: BaseException) -> bool:
        # Bytes that arrived too slowly, or that a restart threw away, are not progress.
        if self.pace is not None and error is self.pace.slow:
            return False
        now = self.position()
        if now > self.best:
            self.best = now
            return True
        return False

    def start(self, job: Job) -> Pace:
        self.pace = job.pace()
        return self.pace


def download(  # noqa: PLR0917 (private; the public signatures are keyword-only)
    source: URLSource,
    pool: urllib3.PoolManager,
    validator: Validator,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    repository_name: object,
    layer_digest: object,
    destination: object,
    *,
    registry_id: object,
    progress: Progress | None,
    parallel: int | None,
    verify: object,
    allow_http: object,
) -> pathlib.Path:
    """Download a layer to *destination*, verified; see `LayerClient.download_layer`."""
    params = validator.params(repository_name, layer_digest, registry_id)
    digest: str = params["layerDigest"]
    if len(digest) > MAX_DIGEST_LENGTH:
        raise InvalidParameter(
            f"layerDigest is {len(digest)} characters long, longer than {MAX_DIGEST_LENGTH}",
            parameter="layerDigest",
        )
    layer = LayerRef(params["repositoryName"], digest, params.get("registryId"))
    for name, value in (("verify", verify), ("allow_http", allow_http)):
        if not isinstance(value, bool):
            raise InvalidParameter(f"{name} must be a bool", parameter=name)
    if parallel is not None and (
        not isinstance(parallel, int)
        or isinstance(parallel, bool)
        or not 1 <= parallel <= MAX_CONNECTIONS
    ):
        raise InvalidParameter(
            f"parallel must be None or 1 to {MAX_CONNECTIONS}, got {parallel!r}",
            parameter="parallel",
        )
    if progress is not None and not callable(progress):
        raise InvalidParameter("progress must be callable", parameter="progress")
    algorithm = check_digest(digest, layer) if verify else "sha256"
    target = resolve_destination(destination, digest, layer)

    deadline = None if policy.timeout is None else time.monotonic() + policy.timeout
    job = Job(source, pool, layer, bool(allow_http), policy, budget, deadline)
    # Unknown layers, bad credentials and bad URLs: found before any file exists.
    job.retrying(job.url)
    landing = Landing(target, layer)
    sink = Sink(landing.file.fileno(), algorithm, progress)
    try:
        try:
            _fetch(job, sink, parallel)
            actual = f"{algorithm}:{sink.hexdigest()}"
        except OSError as exc:
            if isinstance(exc, ECRError):
                raise
            raise landing.error(exc) from exc
        if verify and actual != digest:
            raise DigestMismatch(
                f"the downloaded bytes hash to {actual}, not {digest}; nothing was kept",
                expected=digest,
                actual=actual,
                layer=layer,
            )
        return landing.commit()
    except BaseException:
        job.cancel()
        landing.discard()
        raise
    finally:
        sink.close()


def _fetch(job: Job, sink: Sink, parallel: int | None) -> None:
    def run(end: int | None) -> int | None:
        forward = _Forward(lambda: sink.done, sink.done)
        return job.retrying(lambda: _stream(job, sink, end, forward), forward)

    if parallel != 1:
        # Ask for the first chunk by range: a 206 tells the size, and so whether to
        # go parallel; a 200 means the server ignores ranges, and is the whole body.
        started = time.monotonic()
        total = run(_transfer.CHUNK_SIZE)
        if total is None or sink.done >= total:
            return
        connections = connections_for(total, sink.done, time.monotonic() - started, parallel)
        if connections > 1:
            _parallel(job, sink, total, connections)
            return
    run(None)


def _stream(job: Job, sink: Sink, end: int | None, forward: _Forward) -> int | None:
    """Fetch from ``sink.done`` to *end* (or the end) into *sink*; return the total size."""
    start = sink.done
    pace = forward.start(job)
    response, url = job.open(start, end)
    whole = False
    try:
        total = parse_range(response.status, response.headers, start)
        if response.status == 200 and start:
            sink.restart()  # the server ignored the Range header: start over from byte 0
            start = 0
        if sink.total is None:
            sink.total = total
        reader = Reader(_body(response), pace)
        while True:
            buffer = sink.take()
            try:
                _read(job, reader, memoryview(buffer), url)
            finally:
                sink.give(buffer, reader.count)  # what arrived is kept, whatever came next
            if reader.count < len(buffer):
                break
        expected = end if end is not None and response.status == 206 else total
        if expected is not None and sink.done < min(expected, total or expected):
            raise EndpointUnreachable("the download body ended early", layer=job.layer)
        whole = True
        return total
    finally:
        job.done(response, whole=whole)


def _parallel(job: Job, sink: Sink, total: int, connections: int) -> None:
    """Fetch [sink.done, total) as CHUNK_SIZE ranges over *connections*, verified in order.

    At most *connections* ranges are in flight, and at most two more wait to be
    written, so memory stays near (connections + 3) x CHUNK_SIZE whatever the size.
    """
    spans = ranges(sink.done, total)
    executor = ThreadPoolExecutor(connections, thread_name_prefix="ecr-layers-range")
    pending: deque[Future[bytearray]] = deque()

    def submit() -> None:
        span = next(spans, None)
        if span is not None:
            pending.append(executor.submit(_fetch_range, job, *span))

    try:
        for _ in range(connections):
            submit()
        while pending:
            data = pending.popleft().result()
            sink.give(data, len(data), ring=False)
            del data  # freed once written, before the next range is allocated
            submit()
    except BaseException:
        # One range failed for good, or Ctrl-C: the others' work is wasted, so stop
        # it now rather than wait for reads that may take a read timeout to end.
        job.cancel()
        for future in pending:
            future.cancel()
        raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _fetch_range(job: Job, start: int, end: int) -> bytearray:
    """Return bytes [start, end), resuming a cut-short range from where it stopped."""
    # Allocated once at its final size and filled in place: no growth, no copy.
    buffer = bytearray(end - start)
    view = memoryview(buffer)
    filled = 0
    forward = _Forward(lambda: filled, 0)

    def attempt() -> None:
        nonlocal filled
        pace = forward.start(job)
        response, url = job.open(start + filled, end)
        whole = False
        try:
            if response.status != 206:
                raise EndpointUnreachable(
                    "the download host stopped honouring byte ranges", layer=job.layer
                )
            parse_range(response.status, response.headers, start + filled)
            reader = Reader(_body(response), pace)
            try:
                _read(job, reader, view[filled:], url)
            finally:
                filled += reader.count
            whole = True
        finally:
            job.done(response, whole=whole)
        if filled != end - start:
            # A range that ends early is a fault, never a clean end of file.
            raise EndpointUnreachable("a byte range came back short", layer=job.layer)

    job.retrying(attempt, forward)
    view.release()
    return buffer
