"""
An OCI image layout on disk, as the OCI image-layout spec describes it:
``oci-layout``, ``index.json`` and content-addressed ``blobs/<alg>/<hex>``.

The invariants, kept through crashes and Ctrl-C:

- every file under ``blobs/`` is whole and hashes to its name: blobs are written
  and verified in a staging directory beside ``blobs/`` and moved in by rename
  (then the directory is fsynced);
- ``index.json`` is replaced atomically and last, under a lock, so it never names a
  blob that is not there, and pulls into one layout accumulate instead of racing;
- a pull owns only what it made: a blob already there is kept, or replaced by a
  verified one (by rename), never removed, so a failed pull cannot break another image;
- the layout's directories (``blobs``, ``blobs/<alg>``, staging) are opened once
  without following links, and every blob operation is relative to them: a link planted
  in the layout is refused before anything is written, and nothing outside it is
  touched.  A blob path that is not a regular file is never opened for reading.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import fcntl
import hashlib
import json
import os
import pathlib
import re
import stat
import threading
from collections.abc import Iterator
from typing import Any, Literal, overload

import attrs

from ._exceptions import DestinationError, ImageRef, LayerRef
from ._landing import Landing, alive
from ._manifest import OCI_INDEX, Descriptor, Image
from ._validation import directory_path

LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
#: Where blobs are written and verified before they get their name under blobs/.
STAGING = ".ecr-layers-staging"
_LOCK = ".ecr-layers.lock"
# Held shared by every pull while it uses the staging directory, and taken exclusively
# by the one that removes it: no pull removes it under another.
_STAGING_LOCK = ".ecr-layers-staging.lock"
#: index.json is read whole; one entry per reference keeps real ones far below this.
MAX_INDEX_BYTES = 64 * 1024 * 1024
# A staged blob's name ends in its pid, as do the temporary files of its download.
_STAGED = re.compile(r"\.(\d+)-[0-9a-f]{8}(?:$|\.)")
# The blobs/ directories a pull may write: those of the digests it can verify
# (`_transfer.check_digest`).  Each is checked when the layout is opened.
_ALGORITHMS = ("sha256", "sha512")
_ROOT, _BLOBS = "", "blobs"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@attrs.define
class Layout:
    """One OCI image layout directory (created if missing; its parent must exist)."""

    root: pathlib.Path
    image: ImageRef
    # The staging lock's descriptor while this pull uses staging (until `tidy`).
    _using: int | None = attrs.field(default=None, init=False, repr=False)
    # Descriptors of the layout's directories, opened without following links (until
    # `tidy`), by their paths in it: "" (the root), "blobs", staging, "blobs/<alg>".
    _dirs: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)
    # Held while a "blobs/<alg>" is opened: the pull's downloads land concurrently.
    _opening: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    @classmethod
    def open(cls, destination: object, image: ImageRef) -> Layout:
        """Check *destination* and create the layout's skeleton; nothing is fetched yet."""
        layout = cls(pathlib.Path(directory_path(destination)), image)
        try:
            with layout.os_errors(layout.root):
                if layout.root.exists() and not layout.root.is_dir():
                    raise OSError(errnos.ENOTDIR, "not a directory")
                layout.root.mkdir(exist_ok=True)
                if not os.access(layout.root, os.W_OK | os.X_OK):
                    raise OSError(errnos.EACCES, "not writable")
                # The root is the caller's to name, through a link or not; inside it,
                # nothing is followed.
                layout._dirs[_ROOT] = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY)
                layout._read_index(layout.root / "index.json")  # refused now, not later
                # Every directory that is there is checked before anything is written.
                # Staging is opened under its lock (`_use_staging`); here only checked.
                staging = layout._directory(STAGING, create=False)
                if staging is not None:
                    os.close(staging)
                layout._dirs[_BLOBS] = layout._directory(_BLOBS)
                for algorithm in _ALGORITHMS:
                    key = f"{_BLOBS}/{algorithm}"
                    if (found := layout._directory(key, create=False)) is not None:
                        layout._dirs[key] = found
                layout._use_staging()
                layout.clean_staging()
                marker = layout.root / "oci-layout"
                if not marker.exists():
                    data = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
                    layout.land_file(marker, data, layout.ref(""))
        except BaseException:
            layout.tidy()
            raise
        return layout

    @property
    def staging(self) -> pathlib.Path:
        return self.root / STAGING

    def blob_path(self, digest: str) -> pathlib.Path:
        algorithm, _, encoded = digest.partition(":")
        return self.root / "blobs" / algorithm / encoded

    def ref(self, digest: str) -> LayerRef:
        """The `LayerRef` errors about blob *digest* of this layout's image carry."""
        return LayerRef(self.image.repository_name, digest, self.image.registry_id)

    @contextlib.contextmanager
    def os_errors(self, path: pathlib.Path, digest: str = "") -> Iterator[None]:
        """Raise the file system's errors as `DestinationError` about *path*."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, DestinationError):
                raise
            code = exc.errno or errnos.EIO
            raise DestinationError(
                f"{str(path)!r}: {os.strerror(code)}",
                errno=code,
                path=str(path),
                layer=self.ref(digest),
                image=self.image,
                code=errnos.errorcode.get(code, "DestinationError"),
            ) from exc

    def has(self, blob: Descriptor) -> bool:
        """Whether *blob* is present, whole and verified.

        Anything else at its name (missing, damaged, the wrong size, or not a regular
        file: a fifo, a device, a link) is left as it is, never read, and replaced by
        the verified blob once it is fetched (`adopt`).  A directory there cannot be
        replaced: `DestinationError`, before anything is fetched.
        """
        algorithm, _, name = blob.digest.partition(":")
        path = self.blob_path(blob.digest)
        with self.os_errors(path, blob.digest):
            directory = self._blob_directory(algorithm)
            try:
                info = os.stat(name, dir_fd=directory, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if stat.S_ISDIR(info.st_mode):
                raise OSError(errnos.EISDIR, "a directory where a blob belongs")
            if not stat.S_ISREG(info.st_mode) or info.st_size != blob.size:
                return False
            # Not blocking, not following: what is there may have changed since.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
            with os.fdopen(fd, "rb") as file:
                now = os.fstat(fd)
                if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                    return False
                digest = hashlib.new(algorithm)
                while chunk := file.read(1024 * 1024):
                    digest.update(chunk)
        return f"{algorithm}:{digest.hexdigest()}" == blob.digest

    def stage(self, digest: str) -> pathlib.Path:
        """A fresh staging path for a blob: this process's own, so pulls never share one."""
        return self.staging / f"{digest.replace(':', '-')}.{os.getpid()}-{os.urandom(4).hex()}"

    def clean_staging(self) -> None:
        """Remove what killed pulls left in staging; a running pull's files are kept."""
        staging = self._dirs[STAGING]
        for name in os.listdir(staging):
            match = _STAGED.search(name)
            if match is not None and not alive(int(match[1])):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=staging)

    def adopt(self, staged: pathlib.Path, digest: str) -> None:
        """Move a verified, durable staged blob to its content-addressed name.

        Whatever was at that name (a damaged copy, a fifo, a link) is replaced, never
        followed; the same bytes already there are replaced by themselves.  If the move
        fails, the staged file (this pull's own) is removed.
        """
        if staged.parent != self.staging:
            raise ValueError(f"{str(staged)!r} is not in this layout's staging directory")
        algorithm, _, name = digest.partition(":")
        staging = self._dirs[STAGING]
        with self.os_errors(self.blob_path(digest), digest):
            try:
                directory = self._blob_directory(algorithm)
                os.replace(staged.name, name, src_dir_fd=staging, dst_dir_fd=directory)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staged.name, dir_fd=staging)
                raise
            os.fsync(directory)

    def add_blob(self, digest: str, data: bytes) -> None:
        """Write verified bytes (a manifest) as a blob, through staging."""
        staged = self.stage(digest)
        self.land_file(staged, data, self.ref(digest))
        self.adopt(staged, digest)

    def land_file(self, target: pathlib.Path, data: bytes, layer: LayerRef) -> None:
        landing = Landing(target, layer)
        try:
            with landing.os_errors():
                landing.file.write(data)
            landing.commit()
        except BaseException:
            landing.discard()
            raise

    def _use_staging(self) -> None:
        """Take the staging lock shared, then make sure the directory is there."""
        # Waits only while another pull holds it exclusively, to remove the directory.
        fd = _flocked(self.root / _STAGING_LOCK, fcntl.LOCK_SH)
        try:
            self._dirs[STAGING] = self._directory(STAGING)
        except BaseException:
            os.close(fd)
            raise
        self._using = fd

    @overload
    def _directory(self, key: str) -> int: ...
    @overload
    def _directory(self, key: str, *, create: Literal[False]) -> int | None: ...
    def _directory(self, key: str, *, create: bool = True) -> int | None:
        """Open the layout's directory *key* (``"blobs/sha256"``), never through a link,
        creating it; or None if it is missing and not *create*.  `DestinationError` if
        it is a link (to anywhere) or not a directory."""
        parent, _, name = key.rpartition("/")
        at, path = self._dirs[parent], self.root / key
        with self.os_errors(path):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=at)
            try:
                return os.open(name, _DIRECTORY, dir_fd=at)
            except FileNotFoundError:
                if create:
                    raise
                return None
            except OSError as exc:
                if exc.errno not in (errnos.ELOOP, errnos.ENOTDIR):
                    raise
                link = stat.S_ISLNK(os.stat(name, dir_fd=at, follow_symlinks=False).st_mode)
        code = errnos.ELOOP if link else errnos.ENOTDIR
        raise DestinationError(
            f"{str(path)!r} is {'a symbolic link' if link else 'not a directory'}; a "
            "layout's own directories are never followed",
            errno=code,
            path=str(path),
            layer=self.ref(""),
            image=self.image,
            code=errnos.errorcode[code],
        )

    def _blob_directory(self, algorithm: str) -> int:
        """The descriptor of ``blobs/<algorithm>``, opened (and created) on first use."""
        key = f"{_BLOBS}/{algorithm}"
        with self._opening:
            if key not in self._dirs:
                if algorithm not in _ALGORITHMS:  # digests are checked before: a bug
                    raise ValueError(f"no blob directory for {algorithm[:20]!r}")
                self._dirs[key] = self._directory(key)
            return self._dirs[key]

    def tidy(self) -> None:
        """Stop using staging, and remove the directory if it is empty and no other pull
        is using it; close the layout's directories.  The lock files stay: removing one
        would let two pulls race."""
        fd, self._using = self._using, None
        try:
            if fd is not None:
                self._leave_staging(fd)
        finally:
            dirs, self._dirs = self._dirs, {}
            for directory in dirs.values():
                os.close(directory)

    def _leave_staging(self, fd: int) -> None:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # another pull holds it shared: staging is theirs too
            with contextlib.suppress(OSError):
                os.rmdir(STAGING, dir_fd=self._dirs[_ROOT])  # a link there is not removed
        finally:
            os.close(fd)  # and with it the lock

    def record(self, image: Image) -> None:
        """Name *image* in ``index.json`` by its reference, atomically, replacing an older entry."""
        path = self.root / "index.json"
        with self.os_errors(path), self._locked():
            index = self._read_index(path)
            kept = [
                entry
                for entry in index["manifests"]
                if not (isinstance(entry, dict) and _ref_name(entry) == image.reference)
            ]
            entry: dict[str, Any] = {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest_bytes),
                "annotations": {REF_NAME: image.reference},
            }
            if image.platform is not None:
                os_, arch, *variant = image.platform.split("/")
                entry["platform"] = {"os": os_, "architecture": arch}
                if variant:
                    entry["platform"]["variant"] = variant[0]
            index["manifests"] = [*kept, entry]
            data = json.dumps(index, indent=2).encode() + b"\n"
            self.land_file(path, data, self.ref(image.digest))

    def _read_index(self, path: pathlib.Path) -> dict[str, Any]:
        try:
            data = _read_regular(path, MAX_INDEX_BYTES)
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        try:
            index = json.loads(data) if data is not None else None
        except (ValueError, RecursionError):
            index = None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            # Someone else's file (or a fifo, a device, a link): never overwritten with a guess.
            raise DestinationError(
                f"{str(path)!r} is not an OCI image index (a regular file of JSON, at most "
                f"{MAX_INDEX_BYTES} bytes); not changed",
                errno=errnos.EINVAL,
                path=str(path),
                layer=self.ref(""),
                image=self.image,
            )
        return index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = _flocked(self.root / _LOCK, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)


def _flocked(path: pathlib.Path, how: int) -> int:
    """Open the lock file *path* (creating it) and ``flock`` it *how*; return its fd."""
    # O_NOFOLLOW: a planted link must not make the pull create a file elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, how)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_regular(path: pathlib.Path, limit: int) -> bytes | None:
    """Return a regular file's bytes, or None if it is anything else or larger than *limit*.

    Opened without following a link and without blocking (a fifo would hang the pull).
    Raises FileNotFoundError if there is nothing there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError:  # ELOOP: a link
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        return file.read(limit + 1)


def _ref_name(entry: dict[str, Any]) -> object:
    annotations = entry.get("annotations")
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None
