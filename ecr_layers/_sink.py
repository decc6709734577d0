"""
Where received bytes go: hashed, then written, each on a thread of its own.

Every download (either client's: the asyncio one runs the same transfer in worker
threads) reads into buffers it gets from `Sink.take` and hands them back filled with
`Sink.give`; a parallel download hands over its ranges whole.  The file is
`_landing`'s, the ranges and the pace `_transfer`'s.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading

from ._transfer import Progress

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
#: Writeback is started every this many bytes, so the final fsync has little to wait for.
WRITEBACK_EVERY = 8 * 1024 * 1024
_FADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)


#: What the reader hands over: a ring buffer, or a parallel download's range.
Data = bytes | bytearray
# (data, length, back to the ring?); a None buffer is a restart; None is the end.
_Item = tuple[Data | None, int, bool] | None


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
                    self._hash.update(memoryview(buffer)[:length])
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
                    self._write(memoryview(buffer)[:length])
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
