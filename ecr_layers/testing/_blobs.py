"""
LocalECR's blob bytes by digest, kept in memory or as files in a directory.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator


class BlobStore:
    """Blob bytes by digest: in memory, or as files in a directory."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self._memory: dict[str, bytes] = {}
        self._dir = pathlib.Path(directory) if directory is not None else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)

    def put(self, digest: str, data: bytes) -> None:
        if self._dir is None:
            self._memory[digest] = bytes(data)
            return
        path = self._path(digest)
        if path.exists():
            return
        # Write then rename, so a reader never sees half a blob.
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".blob-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def has(self, digest: str) -> bool:
        if self._dir is None:
            return digest in self._memory
        return self._path(digest).exists()

    def size(self, digest: str) -> int:
        if self._dir is None:
            return len(self._memory[digest])
        return self._path(digest).stat().st_size

    def read(self, digest: str, start: int, end: int, chunk: int) -> Iterator[bytes | memoryview]:
        """Yield bytes ``start`` to ``end`` (exclusive) in pieces of at most *chunk*."""
        if self._dir is None:
            view = memoryview(self._memory[digest])
            for offset in range(start, end, chunk):
                yield view[offset : min(offset + chunk, end)]
            return
        with self._path(digest).open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                data = f.read(min(chunk, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def _path(self, digest: str) -> pathlib.Path:
        assert self._dir is not None
        # Digests reaching here were computed by the store, so they are safe names.
        return self._dir / digest.replace(":", "-")
