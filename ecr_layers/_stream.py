"""
A layer as a readable stream: bytes straight from the pre-signed URL, no file.

`LayerStream` is a raw binary file whose reads come from one connection at a time
(a `_host.Job`, so the URL is renewed once for all and the bounds are the download's).
A cut connection resumes with ``Range`` from the last byte handed out; the bytes are
hashed as they pass, and the read that reaches the end raises `DigestMismatch`
(keeping the last bytes back) instead of ending cleanly when they are wrong, so a
consumer such as ``tarfile`` never sees a clean end of a corrupt layer.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._download import Forward
from ._exceptions import DigestMismatch, ECRError, EndpointUnreachable, LayerRef, TransientError
from ._host import READ_ERRORS, Downloads, Job, body, check_size
from ._transfer import Pace, check_digest, parse_range

if TYPE_CHECKING:
    import urllib3


#: The buffer `open_layer`'s reader puts in front of the connection.
STREAM_BUFFER = 256 * 1024


def open_blob(downloads: Downloads, layer: LayerRef, limit: int | None) -> LayerStream:
    """Look up *layer*'s URL (retried, so `LayersNotFound` and kin are raised here) and
    return it as a stream that reads no more than *limit* bytes."""
    algorithm = check_digest(layer.layer_digest, layer)
    job = downloads.job(layer, limit=limit)
    job.retrying(job.url)
    return LayerStream(job, algorithm)


def read_blob(downloads: Downloads, layer: LayerRef, limit: int | None) -> bytes:
    """Return a whole blob, verified, read into memory (no more than *limit* bytes)."""
    with io.BufferedReader(open_blob(downloads, layer, limit), STREAM_BUFFER) as stream:
        return stream.read()


class StreamCheck:
    """A stream's rules, whatever its transport: where it is, how big the blob is (and
    may be), and the digest, checked at the end, before the last bytes are handed out."""

    def __init__(self, layer: LayerRef, algorithm: str, limit: int | None) -> None:
        self.layer = layer
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._limit = limit
        #: Bytes handed to the reader so far (and hashed).
        self.position = 0
        #: The blob's size once the host has said it.
        self.size: int | None = None

    def connected(self, status: int, headers: Any) -> int:
        """Take a 200/206 answer's headers; return how many bytes to skip (the host
        ignored ``Range``, and sent again what was already handed out)."""
        total = parse_range(status, headers, self.position, self.layer)
        if self.size is None:
            self.size = total
            check_size(self._limit, total, self.layer)
        return self.position if status == 200 else 0

    def wanted(self, count: int) -> int:
        """How many of *count* bytes to ask for: never past the blob's end."""
        return count if self.size is None else min(count, self.size - self.position)

    def passed(self, data: memoryview) -> bool:
        """Account for *data*, about to be handed out (empty: the body ended); return
        True at the end, once the whole has been verified."""
        if data:
            check_size(self._limit, self.position + len(data), self.layer)
            self._hash.update(data)
            self.position += len(data)
            if self.position != self.size:
                return False
        elif self.size is not None and self.position < self.size:
            raise EndpointUnreachable("the layer's body ended early", layer=self.layer)
        actual = f"{self._algorithm}:{self._hash.hexdigest()}"
        if actual != self.layer.layer_digest:
            raise DigestMismatch(
                f"the layer's bytes hash to {actual}, not {self.layer.layer_digest}",
                expected=self.layer.layer_digest,
                actual=actual,
                layer=self.layer,
            )
        return True


class LayerStream(io.RawIOBase):
    """The bytes of one blob, read on demand, verified at the end; see `LayerClient.open_layer`.

    The job's ``limit``, when set, refuses a blob larger than that many bytes
    (`BlobTooLarge`) before reading past it.  Wrapped in an `io.BufferedReader` by
    ``open_layer``.
    """

    _pace: Pace

    def __init__(self, job: Job, algorithm: str) -> None:
        super().__init__()
        self._job = job
        self._check = StreamCheck(job.layer, algorithm, job.limit)
        self._response: urllib3.BaseHTTPResponse | None = None
        self._body: Any = None
        self._url = ""
        self._error: ECRError | None = None
        self._end = False
        self._returned_at = time.monotonic()
        #: What cut the last connection (a reconnect is paid for with it), and the
        #: budget this stream's reconnects have spent, given back at a verified end.
        self._cut_by: TransientError | None = None
        self._spent = 0

    @property
    def position(self) -> int:
        """Bytes handed to the reader so far."""
        return self._check.position

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes (one ``recv`` at most); 0 only at a verified end."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self._error is not None:
            raise self._error
        view = memoryview(buffer).cast("B")
        if self._end or not view:
            return 0
        # Only a try that moved the stream on resets the count of tries without progress.
        forward = Forward(lambda: self.position, self.position)

        def attempt() -> int:
            try:
                return self._read(view)
            except TransientError as exc:
                self._cut_by = exc
                raise

        try:
            return int(self._job.retrying(attempt, forward))
        except DigestMismatch as exc:
            self._error = exc
            raise
        except BaseException:
            self._drop()
            raise
        finally:
            self._returned_at = time.monotonic()

    def _read(self, view: memoryview) -> int:
        if self._response is None:
            self._connect()
        else:
            # Time the consumer spent between reads is not the connection's slowness.
            self._pace.idle(time.monotonic() - self._returned_at)
        try:
            self._pace.check(0)  # the deadline, Ctrl-C, and a connection that stayed too slow
        except BaseException:
            self._drop()  # the retry, if any, resumes on a new connection
            raise
        wanted = view[: self._check.wanted(len(view))]
        with self._read_errors():
            got = self._body.readinto(wanted) if wanted else 0
        self._pace.count(got)
        try:
            # The end's bytes are handed out only if the whole is right.
            self._end = self._check.passed(view[:got])
        except ECRError:
            self._drop()
            raise
        if self._end:
            self._release()
            if self._spent and self._job.budget is not None:
                self._job.budget.refund(self._spent)  # as a call that succeeds does
                self._spent = 0
        return got

    def _connect(self) -> None:
        job = self._job
        cut_by, budget = self._cut_by, job.budget
        if cut_by is not None and budget is not None:
            # Every reconnect is paid for, as a retry is: a host that cuts each
            # connection after a byte moves the stream on, and would otherwise be
            # reconnected to for as long as it liked, every read a success.
            cost = budget.acquire(cut_by)
            if not cost:
                raise copy.copy(cut_by)  # the retry loop says why it ends here
            self._spent += cost
        self._cut_by = None
        self._pace = job.pace()
        response, self._url = job.open(self.position, None)
        self._response = response
        try:
            skip = self._check.connected(response.status, response.headers)
            self._body = body(response)
            self._skip(skip)
        except BaseException:
            self._drop()
            raise

    @contextlib.contextmanager
    def _read_errors(self) -> Iterator[None]:
        """Map a failed read to the transport's typed error, dropping the connection."""
        try:
            yield
        except READ_ERRORS as exc:
            self._drop()
            from . import _mapping

            raise _mapping.from_transport_error(exc, self._job.layer, self._url) from exc

    def _skip(self, count: int) -> None:
        scratch = memoryview(bytearray(min(count, 1024 * 1024)))
        while count:
            with self._read_errors():
                got = self._body.readinto(scratch[: min(count, len(scratch))])
            if not got:
                raise EndpointUnreachable("the layer's body ended early", layer=self._job.layer)
            self._pace.check(got)
            count -= got

    def _release(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            self._job.done(response, whole=True)

    def _drop(self) -> None:
        # Closed, not returned to the pool: the rest of its body was never read.
        response, self._response = self._response, None
        if response is not None:
            self._job.done(response, whole=False)

    def close(self) -> None:
        """Release the connection (closed if the body was not read to its end)."""
        if not self.closed:
            self._drop()
            self._job.finish()
        super().close()
