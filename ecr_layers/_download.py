"""
Verified layer downloads: check everything, fetch in order or by ranges, verify, land.

Everything is checked before a request is sent (inputs, digest, destination).  The
bytes are hashed and written as they arrive (`_sink.Sink`) into a temporary file
that becomes the destination only once verified (`_landing.Landing`).  Faults are
resumed, not restarted: a cut connection continues with ``Range`` from the last
byte received, and an expired URL is renewed once for every worker that needs it
(`_host.Job`).  Retrying is `_retry.call`'s, counting only tries that did not move
the download forward, within the policy's deadline.
"""

from __future__ import annotations

import pathlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs

from . import _transfer
from ._exceptions import (
    DigestMismatch,
    EndpointUnreachable,
    LayerRef,
)
from ._host import Downloads, Job, Reader, body, read, result
from ._landing import Landing, resolve_destination
from ._sink import Sink
from ._transfer import (
    Pace,
    Progress,
    check_bool,
    check_connections,
    check_digest,
    check_progress,
    connections_for,
    parse_range,
    ranges,
)

if TYPE_CHECKING:
    from ._url import LayerUrl
    from ._validation import Validator


@attrs.define
class Forward:
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


@attrs.frozen
class DownloadRequest:
    """A download, checked at the public edge and ready: what to fetch, how to verify
    it, where it lands, and how."""

    layer: LayerRef
    #: The hash to compute (sha256 when not verifying: the bytes are hashed anyway).
    algorithm: str
    target: pathlib.Path
    verify: bool
    allow_http: bool
    parallel: int | None
    progress: Progress | None = attrs.field(repr=False)
    #: The URL, when a batch looked it up already: it saves the first lookup.
    url: LayerUrl | None = attrs.field(default=None, repr=False)
    #: A manifest's size for the blob: a larger body is refused before it is read past.
    max_size: int | None = None

    @classmethod
    def build(
        cls,
        validator: Validator,
        repository_name: object,
        layer_digest: object,
        destination: object,
        *,
        registry_id: object,
        parallel: object,
        verify: object,
        allow_http: object,
        progress: object,
        url: LayerUrl | None = None,
        max_size: int | None = None,
    ) -> DownloadRequest:
        """Check everything a download needs before any request: arguments, digest,
        destination (its directory must exist)."""
        params = validator.params(repository_name, layer_digest, registry_id)
        digest: str = params["layerDigest"]
        layer = LayerRef(params["repositoryName"], digest, params.get("registryId"))
        check_bool(verify, "verify")
        check_bool(allow_http, "allow_http")
        if parallel is not None:
            check_connections(parallel, "parallel", none_too=True)
        check_progress(progress)
        algorithm = check_digest(digest, layer) if verify else "sha256"
        target = resolve_destination(destination, digest, layer)
        return cls(
            layer,
            algorithm,
            target,
            bool(verify),
            bool(allow_http),
            parallel,  # type: ignore[arg-type]  # checked above
            progress,  # type: ignore[arg-type]  # checked above
            url,
            max_size,
        )

    def check(self, actual: str) -> None:
        """Raise `DigestMismatch` if *actual* (``algorithm:hex``) is not the digest."""
        expected = self.layer.layer_digest
        if self.verify and actual != expected:
            raise DigestMismatch(
                f"the downloaded bytes hash to {actual}, not {expected}; nothing was kept",
                expected=expected,
                actual=actual,
                layer=self.layer,
            )


def download(downloads: Downloads, request: DownloadRequest) -> pathlib.Path:
    """Download a layer as *request* says, verified; see `LayerClient.download_layer`.

    The downloads' crew, if any, stops this one with the rest.
    """
    job = downloads.job(request.layer, allow_http=request.allow_http, limit=request.max_size)
    if request.url is not None:
        job.use(request.url)
    # Unknown layers, bad credentials and bad URLs: found before any file exists.
    job.retrying(job.url)
    landing = Landing(request.target, request.layer)
    sink: Sink | None = None
    try:
        # Inside the try: a Ctrl-C as its threads start must not leave the file behind.
        sink = Sink(landing.file.fileno(), request.algorithm, request.progress)
        with landing.os_errors():  # a write that failed on the sink's thread: ENOSPC, EIO
            _fetch(job, sink, request.parallel)
            actual = f"{request.algorithm}:{sink.hexdigest()}"
        request.check(actual)
        return landing.commit()
    except BaseException:
        job.cancel()
        landing.discard()
        raise
    finally:
        if sink is not None:
            sink.close()
        job.finish()


def _fetch(job: Job, sink: Sink, parallel: int | None) -> None:
    def run(end: int | None) -> int | None:
        forward = Forward(lambda: sink.done, sink.done)
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


def _stream(job: Job, sink: Sink, end: int | None, forward: Forward) -> int | None:
    """Fetch from ``sink.done`` to *end* (or the end) into *sink*; return the total size."""
    start = sink.done
    pace = forward.start(job)
    response, url = job.open(start, end)
    whole = False
    try:
        total = parse_range(response.status, response.headers, start, job.layer)
        if response.status == 200 and start:
            sink.restart()  # the server ignored the Range header: start over from byte 0
            start = 0
        if sink.total is None:
            sink.total = total
        job.check_size(total)
        reader = Reader(body(response), pace)
        while True:
            buffer = sink.take()
            try:
                read(job, reader, memoryview(buffer), url)
            finally:
                sink.give(buffer, reader.count)  # what arrived is kept, whatever came next
            job.check_size(sink.done)  # a body without a length says its size only this way
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
            data = result(pending.popleft())
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
    forward = Forward(lambda: filled, 0)

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
            parse_range(response.status, response.headers, start + filled, job.layer)
            reader = Reader(body(response), pace)
            try:
                read(job, reader, view[filled:], url)
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
