"""
Verified layer downloads: stream, hash while streaming, and rename into place only
when the digest matches.  A download either lands whole and verified, or not at all.

Faults are resumed rather than restarted: a dropped connection or a short body
continues with a ``Range`` request from the last byte received (the hash state
carries on), an expired URL is swapped for a fresh one, and a 5xx is retried, all
within the client's `RetryPolicy`.  Retrying is tenacity's job here as everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import pathlib
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import attrs

from ._exceptions import (
    DigestMismatch,
    DownloadError,
    DownloadUrlExpired,
    ECRError,
    EndpointTimeout,
    EndpointUnreachable,
    ServerError,
    TransientError,
    UnsupportedDigest,
)
from ._retry import RetryPolicy, backoff, effective_attempts, retrying

if TYPE_CHECKING:
    import tenacity
    import urllib3

    from ._url import LayerUrl

#: Bytes per read from the socket, and per hash/write step.
READ_SIZE = 1024 * 1024
#: Bytes per ranged request in a parallel download (and so, per connection in memory).
CHUNK_SIZE = 4 * 1024 * 1024
#: When the caller does not say, layers at least this large are fetched over
#: `AUTO_CONNECTIONS` connections, unless the first chunk arrived faster than
#: `AUTO_FAST_ENOUGH` bytes/s.  Measured (docs/performance.md): with connections
#: capped at 16 MiB/s, 4 connections are 3.4x faster; on an uncapped loopback, where
#: one stream already runs at hundreds of MiB/s and the client is CPU-bound, they
#: are about a third slower.  The first chunk's rate tells the two apart.
AUTO_THRESHOLD = 64 * 1024 * 1024
AUTO_CONNECTIONS = 4
AUTO_FAST_ENOUGH = 200 * 1024 * 1024
#: A URL this close to its expiry is refreshed before use, not after a 403.
EXPIRY_MARGIN = 5.0

_HASHES = {"sha256": 64, "sha512": 128}
_WRITEBACK_EVERY = 8 * 1024 * 1024
_FADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)
_TEMP_MARK = ".ecr-layers-"
_TEMP = re.compile(r"\.(?P<name>.+)\.ecr-layers-(?P<pid>\d+)-[0-9a-f]+\.part")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Progress = Callable[[int, "int | None"], None]


class _URLSource(Protocol):
    def get_layer_url(
        self, repository_name: str, layer_digest: str, *, registry_id: str | None = None
    ) -> LayerUrl: ...


def check_digest(digest: str) -> tuple[str, str]:
    """Return (algorithm, hex) for an OCI digest this library can verify.

    Raises `UnsupportedDigest` for anything but ``sha256`` with 64 and ``sha512`` with
    128 lowercase hex characters: the API's pattern admits much more (``sha256:abc``,
    ``X.Y:ab``), and such a digest cannot be checked against the bytes.
    """
    algorithm, _, encoded = digest.partition(":")
    size = _HASHES.get(algorithm)
    if size is None or len(encoded) != size or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise UnsupportedDigest(
            f"cannot verify {digest[:80]!r}: only sha256 (64) and sha512 (128) lowercase hex "
            "digests can be verified; pass verify=False to download without verification",
            layer_digest=digest,
        )
    return algorithm, encoded


def safe_file_name(digest: str) -> str:
    """Return a file name for *digest* that cannot leave its directory (``..:ab`` included)."""
    name = _UNSAFE.sub("_", digest.replace(":", "-"))
    # Every digest has a ':', so the name has a '-': never '', '.' or '..'.  A leading
    # dot would hide the file and could clash with our temporary files' names.
    return "_" + name[1:] if name.startswith(".") else name


def resolve_destination(destination: str | os.PathLike[str], digest: str) -> pathlib.Path:
    """Return the file path to write: *destination*, or a safe name inside it if a directory."""
    path = pathlib.Path(destination)
    if path.is_dir():
        # safe_file_name is what keeps this inside the directory (a hypothesis test
        # holds it to that); the target itself is replaced, never followed.
        return path / safe_file_name(digest)
    if not path.parent.is_dir():
        raise DownloadError(
            f"the directory {str(path.parent)!r} does not exist", layer_digest=digest
        )
    return path


def clean_leftovers(target: pathlib.Path) -> list[pathlib.Path]:
    """Remove temporary files a killed download to *target* left behind; return them.

    A temporary file is ``.<name>.ecr-layers-<pid>-<random>.part`` beside the target.
    Those of a process that is still running are another download in progress: kept.
    """
    removed = []
    for candidate in target.parent.glob(f".{target.name}{_TEMP_MARK}*.part"):
        match = _TEMP.fullmatch(candidate.name)
        if match is None or match["name"] != target.name or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_url_scheme(url: str, *, allow_http: bool) -> None:
    """Refuse a plain-http download URL unless its host is loopback or the caller allows it."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and (allow_http or _loopback(parts.hostname))
    ):
        return
    raise DownloadError(
        f"refusing a {parts.scheme or 'schemeless'} download URL for host {parts.hostname!r}: "
        "only https, or http to loopback, unless allow_http=True",
        code="InsecureDownloadUrl",
    )


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.define
class _Job:
    """One download's state, shared by its attempts and (in parallel mode) its workers."""

    source: _URLSource
    pool: urllib3.PoolManager
    policy: RetryPolicy
    repository_name: str
    digest: str
    registry_id: str | None
    allow_http: bool
    url: LayerUrl | None = None
    #: Bytes received so far by every attempt: how retries tell progress from none.
    received: int = 0
    url_lock: threading.Lock = attrs.Factory(threading.Lock)

    def context(self) -> dict[str, Any]:
        return {
            "repository_name": self.repository_name,
            "layer_digest": self.digest,
            "registry_id": self.registry_id,
        }

    def current_url(self) -> LayerUrl:
        """Return a usable URL, fetching a fresh one if there is none or it is near expiry."""
        with self.url_lock:
            url = self.url
            if url is None or url.expired(margin=EXPIRY_MARGIN):
                url = self.source.get_layer_url(
                    self.repository_name, self.digest, registry_id=self.registry_id
                )
                check_url_scheme(url.download_url, allow_http=self.allow_http)
                self.url = url
            return url

    def open(self, start: int, end: int | None) -> urllib3.BaseHTTPResponse:
        """GET bytes [start, end) (end None: to the end); raise typed errors for failures."""
        import urllib3

        url = self.current_url()
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self.pool.request(
                # No redirects: a pre-signed URL is fetched where it points (a 3xx is an
                # error below), and a redirect could not bypass the https check.
                "GET",
                url.download_url,
                headers=headers,
                preload_content=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _network_error(exc, self.context()) from exc
        if response.status in (200, 206):
            return response
        body = response.read(64 * 1024)
        response.release_conn()
        raise self._http_error(response.status, body, url)

    def _http_error(self, status: int, body: bytes, url: LayerUrl) -> ECRError:
        code, message = _s3_error(body)
        context = self.context()
        if status == 403 and (message.lower().startswith("request has expired") or url.expired()):
            with self.url_lock:
                if self.url is url:
                    self.url = None  # the next attempt fetches a fresh one
            return DownloadUrlExpired("the download URL expired", http_status=status, **context)
        text = f"the download host answered HTTP {status}" + (
            f": {code}: {message}" if code else ""
        )
        if status >= 500 or status == 429:
            return ServerError(text, code=code or str(status), http_status=status, **context)
        return DownloadError(text, code=code or f"HTTP{status}", http_status=status, **context)


def _s3_error(body: bytes) -> tuple[str, str]:
    # Recognise S3's XML error body, but depend on it for nothing: a CDN in front of
    # a pull-through cache may answer in any format.
    text = body.decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    message = re.search(r"<Message>([^<]{1,300})</Message>", text)
    return (code[1] if code else "", message[1] if message else "")


def _network_error(exc: Exception, context: dict[str, Any]) -> TransientError:
    import urllib3

    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return EndpointTimeout("the download timed out", code=type(exc).__name__, **context)
    # The message is ours: urllib3's can quote the URL, and the URL is a credential.
    return EndpointUnreachable(
        "the download connection failed or was cut short", code=type(exc).__name__, **context
    )


class _BackgroundHash:
    """A hash computed on a thread of its own, fed in order.

    hashlib releases the GIL while it hashes, so on a thread of its own the hashing
    overlaps the socket reads and file writes instead of following them.  The queue
    is short: at most two pieces wait, which bounds the memory it holds.
    """

    _RESET = object()

    def __init__(self, algorithm: str) -> None:
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="ecr-layers-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if item is self._RESET:
                self._hash = hashlib.new(self._algorithm)
            else:
                self._hash.update(item)  # type: ignore[arg-type]

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._queue.put(data)  # the caller hands it over and never changes it again

    def reset(self) -> None:
        self._queue.put(self._RESET)

    def hexdigest(self) -> str:
        self.close()
        return str(self._hash.hexdigest())

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@attrs.define
class _Sink:
    """Where verified bytes go: the hash, the temporary file, the progress callback."""

    file: BinaryIO
    hasher: _BackgroundHash
    progress: Progress | None
    done: int = 0
    total: int | None = None
    flushed: int = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.hasher.update(data)
        self.file.write(data)
        self.done += len(data)
        if self.done - self.flushed >= _WRITEBACK_EVERY:
            self._start_writeback()
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _start_writeback(self) -> None:
        # The final fsync is what makes "landed whole" survive a power cut; asking the
        # kernel to start writing back as we go leaves it little to wait for.
        # POSIX_FADV_DONTNEED starts writeback of dirty pages without blocking (Linux).
        self.file.flush()
        if _FADVISE is not None:
            _FADVISE(self.file.fileno(), self.flushed, self.done - self.flushed, _DONTNEED)
        self.flushed = self.done

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hasher.reset()
        self.done = self.flushed = 0


def download(  # noqa: PLR0917 (private; the public signatures are keyword-only)
    source: _URLSource,
    pool: urllib3.PoolManager,
    policy: RetryPolicy,
    repository_name: str,
    layer_digest: str,
    destination: str | os.PathLike[str],
    *,
    registry_id: str | None,
    progress: Progress | None,
    parallel: int | None,
    verify: bool,
    allow_http: bool,
) -> pathlib.Path:
    """Download a layer to *destination*, verified; see `LayerClient.download_layer`."""
    algorithm = check_digest(layer_digest)[0] if verify else "sha256"
    if parallel is not None and parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel!r}")
    target = resolve_destination(destination, layer_digest)
    clean_leftovers(target)
    job = _Job(source, pool, policy, repository_name, layer_digest, registry_id, allow_http)
    job.current_url()  # bad input, unknown layers and auth errors: before any file exists
    temp = target.parent / f".{target.name}{_TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}.part"
    hasher = _BackgroundHash(algorithm)
    try:
        with temp.open("wb") as file:
            sink = _Sink(file, hasher, progress)
            _fetch(job, sink, parallel)
            file.flush()
            os.fsync(file.fileno())
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if verify and actual != layer_digest:
            raise DigestMismatch(
                f"the downloaded bytes hash to {actual}, not {layer_digest}; nothing was kept",
                expected=layer_digest,
                actual=actual,
                **job.context(),
            )
        os.replace(temp, target)
    finally:
        hasher.close()
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return target


def _fetch(job: _Job, sink: _Sink, parallel: int | None) -> None:
    if parallel != 1:
        # Ask for the first chunk by range: a 206 tells the size, and so whether to
        # go parallel; a 200 means the server ignores ranges, and is the whole body.
        started = time.monotonic()
        total = _retrying(job, lambda: _stream(job, sink, CHUNK_SIZE))
        if total is None or sink.done >= total:
            return
        rate = sink.done / max(time.monotonic() - started, 1e-6)
        connections = parallel or (
            AUTO_CONNECTIONS if total >= AUTO_THRESHOLD and rate < AUTO_FAST_ENOUGH else 1
        )
        if connections > 1:
            _parallel(job, sink, total, connections)
            return
    _retrying(job, lambda: _stream(job, sink, None))


def _retrying(job: _Job, attempt: Callable[[], int | None]) -> int | None:
    """Run *attempt* until it succeeds, retrying transient failures by the policy.

    Only failures in a row without progress count against the policy: a long
    download over a flaky link is not given up for having been cut several times.
    """
    streak = _Streak(job)
    attempts = effective_attempts(job.policy)

    def stop(_state: tenacity.RetryCallState) -> bool:
        return streak.failed() >= attempts or streak.overdue()

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and isinstance(outcome.exception(), DownloadUrlExpired):
            return 0.0  # nothing to wait for: a fresh URL is one call away
        return backoff(job.policy, streak.failures)

    return retrying(attempt, stop=stop, wait=wait)


@attrs.define
class _Streak:
    """Failures since the download last made progress."""

    job: _Job
    failures: int = 0
    mark: int = 0
    since: float = attrs.Factory(time.monotonic)

    def failed(self) -> int:
        received = self.job.received
        if received != self.mark:
            self.failures, self.mark, self.since = 0, received, time.monotonic()
        self.failures += 1
        return self.failures

    def overdue(self) -> bool:
        timeout = self.job.policy.timeout
        return timeout is not None and time.monotonic() - self.since > timeout


def _stream(job: _Job, sink: _Sink, end: int | None) -> int | None:
    """Fetch from ``sink.done`` to *end* (or the end) into *sink*; return the total size."""
    start = sink.done
    response = job.open(start, end)
    try:
        total = _total(response, start)
        if response.status == 200 and start:
            # The server ignored the Range header: start over from byte 0.
            sink.restart()
        if sink.total is None:
            sink.total = total
        _pump(response, sink.write, job)
        return total
    finally:
        response.release_conn()


def _pump(response: urllib3.BaseHTTPResponse, write: Callable[[bytes], object], job: _Job) -> None:
    import urllib3

    # read1 (urllib3 2) hands over whatever has arrived, so a cut connection loses
    # nothing already received; read(amt) would drop a partly filled buffer.
    read = getattr(response, "read1", response.read)
    try:
        while data := read(READ_SIZE):
            write(data)
            # Unlocked: a lost update between range workers only delays noticing
            # progress; it is never used to count bytes.
            job.received += len(data)
    except urllib3.exceptions.HTTPError as exc:
        raise _network_error(exc, job.context()) from exc


def _total(response: urllib3.BaseHTTPResponse, start: int) -> int | None:
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != start:
            raise ServerError("the download host sent the wrong byte range", code="BadContentRange")
        return int(match[3]) if match[3] != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _parallel(job: _Job, sink: _Sink, total: int, connections: int) -> None:
    """Fetch [sink.done, total) as CHUNK_SIZE ranges over *connections*, verified in order.

    At most *connections* ranges are in flight or waiting to be hashed, so memory
    stays near connections x CHUNK_SIZE whatever the layer's size.
    """
    ranges: Iterator[tuple[int, int]] = (
        (start, min(start + CHUNK_SIZE, total)) for start in range(sink.done, total, CHUNK_SIZE)
    )
    with ThreadPoolExecutor(connections, thread_name_prefix="ecr-layers-range") as pool:
        pending: deque[Future[bytearray]] = deque()
        for _ in range(connections):
            _submit(pool, pending, job, ranges)
        try:
            while pending:
                data = pending.popleft().result()
                sink.write(data)
                del data  # freed before the next range is allocated: (N + 1) x CHUNK_SIZE at most
                _submit(pool, pending, job, ranges)
        except BaseException:
            # One range failed for good: the others' work is wasted, so stop waiting for it.
            for future in pending:
                future.cancel()
            raise


def _submit(
    pool: ThreadPoolExecutor,
    pending: deque[Future[bytearray]],
    job: _Job,
    ranges: Iterator[tuple[int, int]],
) -> None:
    span = next(ranges, None)
    if span is not None:
        pending.append(pool.submit(_fetch_range, job, *span))


def _fetch_range(job: _Job, start: int, end: int) -> bytearray:
    """Return bytes [start, end), resuming a cut-short range from where it stopped."""
    # Allocated once at its final size and filled in place: no growth, no copy, so
    # a range costs exactly its size in memory.
    buffer = bytearray(end - start)
    view = memoryview(buffer)
    filled = 0

    def fill(data: bytes) -> None:
        nonlocal filled
        view[filled : filled + len(data)] = data
        filled += len(data)

    def attempt() -> int | None:
        response = job.open(start + filled, end)
        try:
            if response.status != 206:
                raise ServerError(
                    "the download host stopped honouring byte ranges", code="RangeIgnored"
                )
            _total(response, start + filled)
            _pump(response, fill, job)
        finally:
            response.release_conn()
        if filled != end - start:
            # A chunk that ends early is a fault, never a clean end of file.
            raise EndpointUnreachable(
                "a byte range came back short", code="ShortRange", **job.context()
            )
        return None

    _retrying(job, attempt)
    return buffer
