"""
The transfer core, independent of how bytes arrive: what to fetch, how fast is too
slow, and where received bytes go (hashed and written on a thread of their own).

A transport (urllib3's in `_download`, an asyncio one later) reads into buffers it
gets from `Sink.take`, hands them back filled with `Sink.give`, checks each read
against a `Pace`, and asks `Plan` which ranges to fetch.  Landing is `_landing`'s.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import attrs

from ._exceptions import (
    EndpointTimeout,
    InvalidParameter,
    LayerRef,
    ServerError,
    UnsupportedDigest,
)

#: Bytes per buffer handed from the reader to the hashing and writing thread.
BUFFER_SIZE = 1024 * 1024
#: Buffers in the ring: the reader fills one while the writer drains the others.
RING = 4
#: Buffers waiting for each stage at most: with a parallel download's 4 MiB ranges,
#: this is what bounds memory beyond the ranges in flight.
QUEUED = 2
#: Bytes per write(2) at most.  A larger write lets the file system take a large
#: page-cache folio at once, from the high-order free blocks that a VM's balloon (free
#: page reporting, as on Firecracker) has handed back to the host; copying into those
#: faults every page in again.  Measured there: 256 MiB in 1 MiB writes cost 0.4-0.5 s
#: of CPU, in 512 KiB or smaller 0.06 s.  Elsewhere a few more syscalls cost nothing.
WRITE_SIZE = 256 * 1024
#: Bytes per ranged request in a parallel download (and so, per connection in memory).
CHUNK_SIZE = 4 * 1024 * 1024
#: When the caller does not say, layers at least this large are fetched over
#: `AUTO_CONNECTIONS` connections, unless the first chunk arrived faster than
#: `AUTO_FAST_ENOUGH` bytes/s: on a fast link one stream is CPU-bound and more
#: connections only add work; on a capped one they multiply the rate.
AUTO_THRESHOLD = 64 * 1024 * 1024
AUTO_CONNECTIONS = 4
AUTO_FAST_ENOUGH = 200 * 1024 * 1024
#: ``parallel`` may be 1 to this many connections.
MAX_CONNECTIONS = 16
#: A connection slower than MIN_RATE bytes/s over MIN_RATE_WINDOW seconds is cut.
MIN_RATE = 1024
MIN_RATE_WINDOW = 30.0
#: Writeback is started every this many bytes, so the final fsync has little to wait for.
WRITEBACK_EVERY = 8 * 1024 * 1024

_HASHES = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
_LENGTH = re.compile(r"[0-9]{1,20}")
_FADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)

Progress = Callable[[int, "int | None"], None]


def check_connections(value: object, parameter: str, *, none_too: bool = False) -> int:
    """Return *value* if it is a connection count, 1 to `MAX_CONNECTIONS`; else raise
    `InvalidParameter` naming *parameter* (saying None is allowed too, if *none_too*)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONNECTIONS:
        return value
    allowed = f"{'None or ' if none_too else ''}1 to {MAX_CONNECTIONS}"
    raise InvalidParameter(f"{parameter} must be {allowed}, got {value!r}", parameter=parameter)


def check_progress(progress: object) -> None:
    """Raise `InvalidParameter` unless *progress* is None or callable."""
    if progress is not None and not callable(progress):
        raise InvalidParameter("progress must be callable", parameter="progress")


def check_digest(digest: str, layer: LayerRef) -> str:
    """Return the hash algorithm of an OCI digest this library can verify.

    Raises `UnsupportedDigest` for anything but ``sha256`` with 64 and ``sha512`` with
    128 lowercase hex characters: the API's pattern admits much more (``sha256:abc``,
    ``X.Y:ab``), and such a digest cannot be checked against the bytes.
    """
    algorithm, _, encoded = digest.partition(":")
    size = _HASHES.get(algorithm)
    if size is None or len(encoded) != size or not _HEX.fullmatch(encoded):
        raise UnsupportedDigest(
            f"cannot verify {digest[:80]!r}: only sha256 (64) and sha512 (128) lowercase hex "
            "digests can be verified; a download without verification must be asked for",
            layer=layer,
        )
    return algorithm


def parse_range(status: int, headers: Mapping[str, str], start: int, layer: LayerRef) -> int | None:
    """Return the body's total size from a 200/206 answer's headers (None if unknown).

    Raises `ServerError` if a 206 is not for the range that starts at *start*.
    """
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "") or "")
        if match is None or int(match[1]) != start:
            raise ServerError("the download host sent the wrong byte range", layer=layer)
        return int(match[3]) if match[3] != "*" else None
    length = headers.get("Content-Length")
    # Not str.isdigit: it admits "²", which int() refuses.
    return int(length) if length is not None and _LENGTH.fullmatch(length) else None


def connections_for(total: int, done: int, seconds: float, parallel: int | None) -> int:
    """Return how many connections should fetch the rest, after a first chunk."""
    if parallel is not None:
        return parallel
    rate = done / max(seconds, 1e-6)
    return AUTO_CONNECTIONS if total >= AUTO_THRESHOLD and rate < AUTO_FAST_ENOUGH else 1


def ranges(start: int, total: int) -> Iterator[tuple[int, int]]:
    """Yield [start, end) spans of `CHUNK_SIZE` covering [start, total)."""
    for offset in range(start, total, CHUNK_SIZE):
        yield offset, min(offset + CHUNK_SIZE, total)


@attrs.define
class Pace:
    """One connection's bounds: the minimum rate, the deadline, and cancellation."""

    layer: LayerRef
    deadline: float | None
    cancelled: threading.Event
    floor: int = MIN_RATE
    window: float = MIN_RATE_WINDOW
    _since: float = attrs.field(factory=time.monotonic)
    _count: int = 0
    #: The error that cut this connection for being too slow, if one did.
    slow: EndpointTimeout | None = None

    def check(self, received: int) -> None:
        """Account for *received* bytes; raise if the connection must stop."""
        now = time.monotonic()
        self._count += received
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        if self.deadline is not None and now > self.deadline:
            raise EndpointTimeout("the download did not finish by its deadline", layer=self.layer)
        if now - self._since >= self.window:
            if self._count < self.floor * self.window:
                self.slow = EndpointTimeout(
                    f"the download ran below {self.floor} bytes/s for {self.window:g} s",
                    layer=self.layer,
                )
                raise self.slow
            self._since, self._count = now, 0

    def count(self, received: int) -> None:
        """Account for *received* bytes without checking: the next `check` judges them."""
        self._count += received

    def idle(self, seconds: float) -> None:
        """Leave *seconds* out of the rate: time a stream's consumer spent between reads."""
        self._since += seconds


#: What the reader hands over: a buffer, or the chunks an event loop received, in order
#: (handed over together, so that a queue slot and a thread wake-up carry a buffer's worth).
Data = bytes | bytearray | list[bytes]
# (data, length, back to the ring?); a None buffer is a restart; None is the end.
_Item = tuple[Data | None, int, bool] | None


def _pieces(data: Data, length: int) -> list[bytes] | list[memoryview]:
    """The bytes of an item, as hashlib and os.write take them, without a copy."""
    if isinstance(data, list):
        return data
    return [memoryview(data)[:length]]


class Sink:
    """Hashes, then writes, received bytes in order: two stages, each on a thread.

    hashlib and file writes release the GIL, so hashing one buffer overlaps writing
    the one before and reading the one after.  The reader fills buffers from a small
    ring (`take`) and hands them over (`give`); the writer hands each back once it is
    hashed and written, so nothing is allocated or copied per read, and memory stays
    at the ring's size.
    """

    def __init__(self, fd: int, algorithm: str, progress: Progress | None) -> None:
        self._fd = fd
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._progress = progress
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(RING):
            self._free.put(bytearray(BUFFER_SIZE))
        self._to_hash: queue.Queue[_Item] = queue.Queue(QUEUED)
        self._to_write: queue.Queue[_Item] = queue.Queue(QUEUED)
        #: Bytes handed over, in order: the verified-in-order offset of the download.
        self.done = 0
        self.total: int | None = None
        self._written = self._flushed = 0
        #: What stopped the writer: the file system's error (or, for a bug, any other).
        self.error: Exception | None = None
        self._threads = [
            threading.Thread(target=self._hashing, name="ecr-layers-hash", daemon=True),
            threading.Thread(target=self._writing, name="ecr-layers-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def take(self) -> bytearray:
        """Return a free buffer of `BUFFER_SIZE` bytes to read into."""
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                # The writer hands every buffer back, even after an error; only a
                # stage that is gone for good can keep one, and then waiting is wrong.
                if not all(thread.is_alive() for thread in self._threads):
                    raise self.error or RuntimeError("the writer thread stopped") from None

    def give(self, buffer: Data, length: int, *, ring: bool = True) -> None:
        """Hand over the first *length* bytes of *buffer*; never touch it again.

        *ring* buffers go back to the ring once written; others (a parallel
        download's ranges) are dropped, which frees them.
        """
        if self.error is not None:
            raise self.error
        if length <= 0:
            if ring and isinstance(buffer, bytearray):
                self._free.put(buffer)
            return
        self._to_hash.put((buffer, length, ring))
        self._handed(length)

    def offer(self, buffer: Data, length: int) -> bool:
        """`give` data that is not the ring's, if that will not block; else False.

        For an event loop, which must not wait on the writer: it gives in a thread
        only when the queue is full.
        """
        if self.error is not None:
            raise self.error
        if length <= 0:
            return True
        try:
            self._to_hash.put_nowait((buffer, length, False))
        except queue.Full:
            return False
        self._handed(length)
        return True

    def _handed(self, length: int) -> None:
        self.done += length
        if self._progress is not None:
            self._progress(self.done, self.total)

    def restart(self) -> None:
        """Throw away everything so far (the server ignored a Range): start from byte 0."""
        self._to_hash.put((None, 0, False))
        self.done = 0

    def hexdigest(self) -> str:
        """Wait for every buffer to be hashed and written; return the hash, or raise the
        write error."""
        self.close()
        if self.error is not None:
            raise self.error
        return str(self._hash.hexdigest())

    def close(self) -> None:
        if self._threads[0].is_alive():
            self._to_hash.put(None)
        for thread in self._threads:
            thread.join()

    def _hashing(self) -> None:
        while (item := self._to_hash.get()) is not None:
            buffer, length, _ = item
            if buffer is None:
                self._hash = hashlib.new(self._algorithm)
            elif self.error is None:
                try:
                    for piece in _pieces(buffer, length):
                        self._hash.update(piece)
                except Exception as exc:  # handed to the reader, and raised there
                    self.error = exc
            self._to_write.put(item)
            del item, buffer  # the writer's now, not ours while we wait for the next
        self._to_write.put(None)

    def _writing(self) -> None:
        while (item := self._to_write.get()) is not None:
            buffer, length, ring = item
            if buffer is None:
                self._truncate()
                continue
            if self.error is None:
                try:
                    for piece in _pieces(buffer, length):
                        self._write(memoryview(piece))
                except Exception as exc:  # handed to the reader, and raised there
                    self.error = exc
            if ring and isinstance(buffer, bytearray):  # only the ring's buffers are ring=True
                self._free.put(buffer)
            del item, buffer  # a range's 4 MiB must not outlive its write while we wait

    def _write(self, view: memoryview) -> None:
        while view:
            written = os.write(self._fd, view[:WRITE_SIZE])
            view = view[written:]
            self._written += written
        if self._written - self._flushed >= WRITEBACK_EVERY:
            # POSIX_FADV_DONTNEED starts writeback of dirty pages without blocking
            # (Linux), so the final fsync that makes "landed whole" survive a power
            # cut has little left to wait for.
            if _FADVISE is not None:
                _FADVISE(self._fd, self._flushed, self._written - self._flushed, _DONTNEED)
            self._flushed = self._written

    def _truncate(self) -> None:
        if self.error is None:
            try:
                os.lseek(self._fd, 0, os.SEEK_SET)
                os.ftruncate(self._fd, 0)
            except OSError as exc:
                self.error = exc
        self._written = self._flushed = 0
