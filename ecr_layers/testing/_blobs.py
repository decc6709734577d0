"""
LocalECR's blob bytes by digest, as files in a directory (a temporary one by default).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator


class BlobStore:
    """Blob bytes by digest, one file each, in *directory* or a temporary one it owns.

    On disk even by default: an image pushed over the registry API may be gigabytes,
    and the endpoint's memory must not grow with it.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        # A TemporaryDirectory removes itself when closed or collected, so a LocalECR
        # that is never stopped still leaves nothing behind.
        self._owned = tempfile.TemporaryDirectory(prefix="localecr-") if directory is None else None
        self.directory = pathlib.Path(self._owned.name if self._owned else directory)  # type: ignore[arg-type]
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove the directory if this store made it."""
        if self._owned is not None:
            self._owned.cleanup()

    def put(self, digest: str, data: bytes) -> None:
        """Store *data* under *digest*, replacing what was there (tests store wrong bytes)."""
        path = self._path(digest)
        # Write then rename, so a reader never sees half a blob.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".blob-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def adopt(self, digest: str, file: pathlib.Path) -> None:
        """Store *file* (verified to hold *digest*, on this directory's file system) as the blob.

        Two uploads of one blob finishing together both land here: the rename is atomic
        and the bytes are the same, so either wins and the blob is stored once.
        """
        os.replace(file, self._path(digest))

    def has(self, digest: str) -> bool:
        return self._path(digest).exists()

    def size(self, digest: str) -> int:
        return self._path(digest).stat().st_size

    def read(self, digest: str, start: int, end: int, chunk: int) -> Iterator[bytes | memoryview]:
        """Yield bytes ``start`` to ``end`` (exclusive) in pieces of at most *chunk*."""
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
        # Digests reaching here were computed by the store or matched DIGEST, so they
        # hold no path separator.
        return self.directory / digest.replace(":", "-")
