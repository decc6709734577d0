"""
``export_rootfs`` and ``read_file``: an image's layers applied as a root filesystem.

One job: apply verified layer streams safely.  Nothing here uses ``tarfile``'s
extraction: every entry is created by this module through directory file
descriptors, each path component opened with ``O_NOFOLLOW`` from the root's fd.  A
symlink met on the way to a parent is resolved as if the root were ``/`` (absolute
targets from the root, ``..`` clamped at it, at most `MAX_HOPS` hops), so no path
a layer writes can leave the root, whatever earlier layers planted.

Rules where the OCI spec leaves a choice (documented in docs/files.md):

- an entry name with a ``..`` component is refused (`UnsafeLayer`); a leading ``/``
  or ``./`` is dropped;
- a bare ``.wh.``, ``.wh..``/``.wh...``, and any ``.wh..wh.`` name other than the opaque
  marker ``.wh..wh..opq`` are refused (`UnsafeLayer`): they never delete a directory;
- a whiteout whose parent path goes through a symlink is refused (`UnsafeLayer`):
  whiteouts describe the layer's own directories, never a link's target;
- whiteouts hide only lower layers: what the same layer wrote stays;
- device nodes and fifos are never created, only listed; setuid/setgid are dropped
  unless asked for; owners, mtimes and xattrs are not applied.
"""

from __future__ import annotations

import errno as _errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

import attrs

from ._exceptions import (
    BlobTooLarge,
    DestinationError,
    DigestMismatch,
    FileNotInImage,
    ImageRef,
    InvalidParameter,
    InvalidResponse,
    LayerRef,
    UnsafeLayer,
    UnsupportedDigest,
    UnsupportedMediaType,
)
from ._host import Crew
from ._manifest import Descriptor, Image
from ._transfer import check_bool, check_progress
from ._validation import directory_path

if TYPE_CHECKING:
    from ._host import Downloads
    from ._operations import Port

#: Default cap on an export's unpacked (uncompressed tar) bytes, all layers together.
MAX_SIZE = 16 * 1024**3
#: Default cap on an export's tar entries, all layers together.
MAX_ENTRIES = 1_000_000
#: Default cap on the bytes `read_file` returns.
MAX_FILE_SIZE = 256 * 1024**2
#: Symlinks followed while resolving one path, as Linux's ``MAXSYMLINKS``.
MAX_HOPS = 40
# As `LayerClient.get_config`'s default cap (not imported: _client imports this module).
_CONFIG_CAP = 8 * 1024 * 1024

OPAQUE = ".wh..wh..opq"
_WH = ".wh."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 256 * 1024

_GZIP = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
_TAR = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
_ZSTD = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@attrs.frozen
class Export:
    """An exported root filesystem: the image, where it is, and what was not created."""

    image: Image
    #: The directory now holding the root filesystem.
    path: str
    #: Device nodes and fifos the layers hold, never created: their paths in the image.
    skipped: tuple[str, ...] = ()


# -- names ---------------------------------------------------------------------------


def split_name(name: str) -> list[str] | None:
    """Return an entry name's components inside the root, or None if it climbs (``..``).

    A leading ``/`` or ``./`` and empty or ``.`` components are dropped: the root is
    ``[]``.
    """
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return parts


def whiteout_kind(base: str) -> str | None:
    """Classify a base name: ``"opaque"``, ``"whiteout"``, ``"reserved"`` (refused), or None.

    Only exactly ``.wh..wh..opq`` is opaque; ``.wh.`` followed by a real name (not
    empty, ``.`` or ``..``, not ``.wh..wh.``-prefixed) is a whiteout of that name.
    """
    if not base.startswith(_WH):
        return None
    if base == OPAQUE:
        return "opaque"
    target = base[len(_WH) :]
    if target in ("", ".", "..") or base.startswith(_WH + _WH):
        return "reserved"
    return "whiteout"


# -- layer streams ---------------------------------------------------------------------


class _Hashing:
    """The uncompressed tar as the tar reader consumes it: hashed, counted, capped."""

    def __init__(self, source: Any, budget: list[int], limit: int, layer: LayerRef) -> None:
        self._source = source
        self._budget = budget  # one cell shared by every layer of an export
        self._limit = limit
        self._layer = layer
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read(size if size is not None and size >= 0 else _CHUNK)
        self.hash.update(data)
        self._budget[0] += len(data)
        if self._budget[0] > self._limit:
            raise BlobTooLarge(
                f"the image unpacks to more than max_size={self._limit} bytes",
                size=self._budget[0],
                limit=self._limit,
                layer=self._layer,
            )
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _decompressor(
    raw: io.BufferedIOBase, descriptor: Descriptor, layer: LayerRef, image: ImageRef
) -> Any:
    media_type = descriptor.media_type
    if media_type in _GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if media_type in _TAR:
        return raw
    if media_type in _ZSTD:
        try:
            import zstandard
        except ImportError:
            raise UnsupportedMediaType(
                f"layer {layer.layer_digest[:80]} is zstd; install ecr-layers[zstd] to read it",
                media_type=media_type,
                image=image,
                layer=layer,
            ) from None
        reader = zstandard.ZstdDecompressor()
        return reader.stream_reader(cast("IO[bytes]", raw), read_across_frames=True)
    raise UnsupportedMediaType(
        f"layer {layer.layer_digest[:80]} has media type {media_type[:100]!r}, not a tar",
        media_type=media_type,
        image=image,
        layer=layer,
    )


def _layer_entries(
    downloads: Downloads,
    *,
    image: ImageRef,
    layer: LayerRef,
    descriptor: Descriptor,
    diff_id: str | None,
    budget: list[int],
    limits: tuple[int, int],
    counter: list[int],
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Yield a layer's tar entries as they stream in; verify both digests at the end.

    The compressed digest is checked by the stream at its end; the uncompressed tar's
    against *diff_id* (None: not checked).  A broken gzip or tar is `InvalidResponse`,
    unless the bytes themselves were wrong (`DigestMismatch`).
    """
    from ._stream import STREAM_BUFFER, open_blob

    max_size, max_entries = limits
    raw = io.BufferedReader(open_blob(downloads, layer, descriptor.size), STREAM_BUFFER)
    with raw:
        hashing = _Hashing(_decompressor(raw, descriptor, layer, image), budget, max_size, layer)
        try:
            with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    counter[0] += 1
                    if counter[0] > max_entries:
                        raise BlobTooLarge(
                            f"the image has more than max_entries={max_entries} entries",
                            size=counter[0],
                            limit=max_entries,
                            layer=layer,
                        )
                    yield tar, member
            hashing.drain()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            if isinstance(exc, DestinationError):
                raise
            raw.read()  # the stream raises DigestMismatch if the bytes were not the layer's
            raise InvalidResponse(
                f"layer {layer.layer_digest[:80]} is not a valid tar archive: {exc}",
                layer=layer,
            ) from exc
        raw.read()  # to the end: the compressed digest is checked there
    actual = "sha256:" + hashing.hash.hexdigest()
    if diff_id is not None and actual != diff_id:
        raise DigestMismatch(
            f"layer {layer.layer_digest[:80]} unpacks to {actual}, not its diff_id {diff_id[:80]}",
            expected=diff_id,
            actual=actual,
            layer=layer,
        )


def _diff_ids(config: dict[str, Any], image: Image) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if (
        not isinstance(ids, list)
        or len(ids) != len(image.layers)
        or not all(isinstance(i, str) for i in ids)
    ):
        raise InvalidResponse(
            f"the image's config has no diff_ids for its {len(image.layers)} layers",
            image=image.ref,
        )
    for diff_id in ids:
        if not diff_id.startswith("sha256:"):
            raise UnsupportedDigest(
                f"diff_id {diff_id[:80]!r} is not sha256",
                layer=LayerRef(image.repository_name, image.config.digest, image.registry_id),
            )
    return ids


# -- the root, through file descriptors -----------------------------------------------


class _Root:
    """A directory tree written only through fds from its root's; never followed out."""

    def __init__(self, fd: int, keep_special_bits: bool) -> None:
        self.fd = fd
        self._keep = keep_special_bits
        #: Directory modes to set last, so that a read-only directory takes its children.
        self.dir_modes: dict[tuple[str, ...], int] = {}
        self.skipped: list[str] = []

    def _step(self, fd: int, name: str) -> int:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)

    def parent(
        self, parts: list[str], *, create: bool, follow: bool, fail: Callable[[str], Exception]
    ) -> tuple[int, tuple[str, ...]] | None:
        """Open the directory holding ``parts[-1]``; return its fd and resolved path.

        Symlinks on the way are followed inside the root when *follow*, else refused
        with *fail*.  Missing directories are created when *create*, else None.
        """
        todo = list(parts[:-1])
        path: list[str] = []
        fd = os.dup(self.fd)
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    path = path[:-1]
                    os.close(fd)
                    fd = self._open_path(path)
                    continue
                try:
                    nxt = self._step(fd, name)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(name, 0o700, dir_fd=fd)
                    nxt = self._step(fd, name)
                    self.dir_modes.setdefault((*path, name), 0o755)
                except OSError as exc:
                    if exc.errno not in (_errno.ELOOP, _errno.ENOTDIR):
                        raise
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(info.st_mode):
                        if not follow:
                            raise fail("its path goes through a symlink") from None
                        hops += 1
                        if hops > MAX_HOPS:
                            raise fail(f"more than {MAX_HOPS} symlinks on its path") from None
                        target = os.readlink(name, dir_fd=fd)
                        if target.startswith("/"):
                            path = []
                            os.close(fd)
                            fd = os.dup(self.fd)
                        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                        continue
                    if not create:
                        return None
                    # A file where the layer puts a directory: the layer's directory wins.
                    os.unlink(name, dir_fd=fd)
                    os.mkdir(name, 0o700, dir_fd=fd)
                    nxt = self._step(fd, name)
                    self.dir_modes.setdefault((*path, name), 0o755)
                os.close(fd)
                fd = nxt
                path.append(name)
            return fd, tuple(path)
        except BaseException:
            os.close(fd)
            raise

    def _open_path(self, path: list[str]) -> int:
        # Only ever a path this walk already opened, each part a real directory.
        fd = os.dup(self.fd)
        for name in path:
            nxt = self._step(fd, name)
            os.close(fd)
            fd = nxt
        return fd

    def remove(self, fd: int, name: str) -> None:
        """Remove *name* in *fd*, a whole tree if a directory, never following a link."""
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            sub = self._step(fd, name)
            try:
                os.chmod(sub, 0o700)  # a read-only directory of a lower layer
                for child in os.listdir(sub):
                    self.remove(sub, child)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)

    def clear(self, fd: int, path: tuple[str, ...], keep: set[tuple[str, ...]]) -> None:
        """Remove everything under *fd* (at *path*) that is not in *keep* (this layer's)."""
        for child in os.listdir(fd):
            here = (*path, child)
            if here not in keep:
                self.remove(fd, child)
                continue
            if stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                sub = self._step(fd, child)
                try:
                    self.clear(sub, here, keep)
                finally:
                    os.close(sub)

    def mode(self, member: tarfile.TarInfo) -> int:
        mode = member.mode & 0o7777
        return mode if self._keep else mode & ~(stat.S_ISUID | stat.S_ISGID)

    def finish(self) -> None:
        """Set directory modes, deepest first, on what is still a directory."""
        for path in sorted(self.dir_modes, key=len, reverse=True):
            try:
                fd = self._open_path(list(path))
            except OSError:
                continue  # replaced or removed by a later layer
            try:
                os.chmod(fd, self.dir_modes[path])
            finally:
                os.close(fd)


def _apply(
    root: _Root,
    layer: LayerRef,
    entries: Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]],
) -> None:
    """Apply one layer's entries to *root*; whiteouts act on lower layers only."""
    written: set[tuple[str, ...]] = set()  # this layer's paths and their parents
    for tar, member in entries:

        def unsafe(why: str, member: tarfile.TarInfo = member) -> UnsafeLayer:
            return UnsafeLayer(
                f"layer {layer.layer_digest[:80]}: entry {member.name[:200]!r}: {why}",
                entry=member.name,
                layer=layer,
            )

        parts = split_name(member.name)
        if parts is None:
            raise unsafe("its name climbs out of the root with '..'")
        if not parts:
            if member.isdir():
                continue  # the root itself: its mode is the export's
            raise unsafe("it would replace the root")
        base = parts[-1]
        kind = whiteout_kind(base)
        if kind == "reserved":
            raise unsafe("a reserved whiteout name (only .wh..wh..opq is opaque)")
        if kind is not None:
            # A whiteout never follows a link: it describes this layer's own directory.
            found = root.parent(parts, create=False, follow=False, fail=unsafe)
            if found is None:
                continue  # nothing below to hide
            fd, path = found
            try:
                if kind == "opaque":
                    root.clear(fd, path, written)
                elif (*path, base[len(_WH) :]) not in written:
                    root.remove(fd, base[len(_WH) :])
            finally:
                os.close(fd)
            continue
        opened = root.parent(parts, create=True, follow=True, fail=unsafe)
        assert opened is not None  # created
        fd, path = opened
        try:
            here = (*path, base)
            for i in range(len(here) + 1):
                written.add(here[:i])
            _entry(root, tar, member, fd, base, here, unsafe)
        finally:
            os.close(fd)


def _entry(  # noqa: PLR0917  (one entry's whole context, passed once)
    root: _Root,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    fd: int,
    base: str,
    here: tuple[str, ...],
    unsafe: Callable[[str], UnsafeLayer],
) -> None:
    if member.ischr() or member.isblk() or member.isfifo():
        root.skipped.append("/" + "/".join(here))
        return
    try:
        old = os.stat(base, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if member.isdir():
        if old is None or not stat.S_ISDIR(old.st_mode):
            if old is not None:
                root.remove(fd, base)
            os.mkdir(base, 0o700, dir_fd=fd)
        sub = os.open(base, _DIR_FLAGS, dir_fd=fd)
        try:
            os.chmod(sub, 0o700)  # writable until `finish`
        finally:
            os.close(sub)
        root.dir_modes[here] = root.mode(member)
        return
    if old is not None:
        root.remove(fd, base)
        root.dir_modes.pop(here, None)
    if member.issym():
        os.symlink(member.linkname, base, dir_fd=fd)  # verbatim: resolved only on use
    elif member.islnk():
        _hardlink(root, member, fd, base, unsafe)
    elif member.isreg():
        _file(root, tar, member, fd, base)
    else:
        raise unsafe(f"entry type {member.type!r} is not supported")


def _hardlink(
    root: _Root, member: tarfile.TarInfo, fd: int, base: str, unsafe: Callable[[str], UnsafeLayer]
) -> None:
    """Link *base* to the link's target, resolved inside the root (never out of it)."""
    parts = split_name(member.linkname)
    if not parts:
        raise unsafe(f"its hardlink target {member.linkname[:200]!r} is outside the root")
    found = root.parent(parts, create=False, follow=True, fail=unsafe)
    if found is None:
        raise unsafe(f"its hardlink target {member.linkname[:200]!r} is not in the image")
    src_fd, _ = found
    try:
        target = os.stat(parts[-1], dir_fd=src_fd, follow_symlinks=False)
        if not stat.S_ISREG(target.st_mode):
            raise unsafe(f"its hardlink target {member.linkname[:200]!r} is not a file")
        os.link(parts[-1], base, src_dir_fd=src_fd, dst_dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise unsafe(f"its hardlink target {member.linkname[:200]!r} is not in the image") from None
    finally:
        os.close(src_fd)


def _file(root: _Root, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, base: str) -> None:
    """Write a regular file's bytes as they stream, then its mode (never through a link)."""
    out = os.open(
        base,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=fd,
    )
    try:
        source = tar.extractfile(member)
        assert source is not None  # a regular file
        while chunk := source.read(_CHUNK):
            _write_all(out, chunk)
        os.chmod(out, root.mode(member))
    finally:
        os.close(out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- export ----------------------------------------------------------------------------


def check_destination(destination: object) -> str:
    """Return *destination* as a path, if it is missing or an empty directory."""
    path = os.path.abspath(directory_path(destination))

    def refuse(why: str) -> InvalidParameter:
        return InvalidParameter(f"destination {path!r} {why}", parameter="destination")

    try:
        info = os.stat(path, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            # The root replaces the directory by a rename: a link would be replaced, not
            # filled, so it is refused rather than silently followed or dropped.
            raise refuse("is a symbolic link; give the directory it points to")
        if not stat.S_ISDIR(info.st_mode):
            raise refuse("exists and is not a directory")
        if os.listdir(path):
            raise refuse("is not empty")
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.isdir(os.path.dirname(path)):
            raise refuse("cannot be made: its parent is missing or not a directory") from None
    except OSError as exc:  # no permission, a name too long, a loop
        raise refuse(f"cannot be used: {exc.strerror or exc}") from None
    return path


def check_limit(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidParameter(f"{name} must be an int >= 1, got {value!r:.60}", parameter=name)
    return value


def export(
    client: Port,
    repository_name: str,
    reference: str,
    destination: object,
    *,
    registry_id: str | None,
    platform: str | None,
    max_size: int = MAX_SIZE,
    max_entries: int = MAX_ENTRIES,
    keep_special_bits: bool = False,
    crew: Crew | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Export:
    """Apply an image's layers into *destination*, built beside it and renamed into place."""
    from ._images import config_blob, parse_config
    from ._stream import read_blob

    path = check_destination(destination)
    limits = (check_limit(max_size, "max_size"), check_limit(max_entries, "max_entries"))
    check_bool(keep_special_bits, "keep_special_bits")
    check_progress(progress)
    client.validator.image_params(repository_name, reference, registry_id)
    image = client.get_image(repository_name, reference, registry_id=registry_id, platform=platform)
    downloads = client.downloads(crew or Crew())
    blob, size = config_blob(image, _CONFIG_CAP)
    config = parse_config(read_blob(downloads, blob, size), image, _CONFIG_CAP)
    diff_ids = _diff_ids(config, image)
    parent, name = os.path.split(path)
    try:
        temp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".export", dir=parent)
    except OSError as exc:
        raise _destination(exc, path, image) from exc
    try:
        fd = os.open(temp, _DIR_FLAGS)
        try:
            root = _Root(fd, keep_special_bits)
            budget, counter, done = [0], [0], 0
            total = sum(layer.size for layer in image.layers)
            for descriptor, diff_id in zip(image.layers, diff_ids, strict=True):
                layer = LayerRef(image.repository_name, descriptor.digest, image.registry_id)
                entries = _layer_entries(
                    downloads,
                    image=image.ref,
                    layer=layer,
                    descriptor=descriptor,
                    diff_id=diff_id,
                    budget=budget,
                    limits=limits,
                    counter=counter,
                )
                try:
                    _apply(root, layer, entries)
                except OSError as exc:
                    if isinstance(exc, DestinationError):
                        raise
                    raise DestinationError(
                        f"cannot write layer {layer.layer_digest[:80]} into {temp}: {exc}",
                        errno=exc.errno,
                        path=temp,
                        layer=layer,
                        image=image.ref,
                    ) from exc
                done += descriptor.size
                if progress is not None:
                    progress(done, total)
            root.finish()
            os.chmod(fd, 0o755)  # noqa: S103  (a root filesystem's /, as every image has it)
        finally:
            os.close(fd)
        try:
            os.rename(temp, path)  # onto a missing path, or an empty directory
        except OSError as exc:  # e.g. something appeared there meanwhile
            raise _destination(exc, path, image) from exc
    except BaseException:
        _discard(temp)
        raise
    return Export(image, path, tuple(root.skipped))


def _destination(exc: OSError, path: str, image: Image) -> DestinationError:
    return DestinationError(
        f"cannot write {path}: {exc.strerror or exc}",
        errno=exc.errno,
        path=path,
        layer=LayerRef(image.repository_name, image.digest, image.registry_id),
        image=image.ref,
    )


def _discard(temp: str) -> None:
    """Remove a failed export's directory through fds: links in it are never followed,
    and read-only directories are made writable on the way."""
    parent, name = os.path.split(temp)
    fd = os.open(parent, _DIR_FLAGS)
    try:
        _Root(fd, keep_special_bits=False).remove(fd, name)
    finally:
        os.close(fd)


# -- read_file -------------------------------------------------------------------------


@attrs.define
class _Meta:
    """What one layer holds, by path: entries, implied directories, whiteouts, opaques."""

    entries: dict[tuple[str, ...], tarfile.TarInfo] = attrs.Factory(dict)
    dirs: set[tuple[str, ...]] = attrs.Factory(set)
    whiteouts: set[tuple[str, ...]] = attrs.Factory(set)
    opaque: set[tuple[str, ...]] = attrs.Factory(set)


def read_file(
    client: Port,
    repository_name: str,
    reference: str,
    path: str,
    *,
    registry_id: str | None,
    platform: str | None,
    max_size: int = MAX_FILE_SIZE,
    crew: Crew | None = None,
) -> bytes:
    """Return one file's bytes as the image's root shows it, reading layers top-down."""
    if not isinstance(path, str) or not path:
        raise InvalidParameter("path must be a non-empty str", parameter="path")
    limit = check_limit(max_size, "max_size")
    client.validator.image_params(repository_name, reference, registry_id)
    image = client.get_image(repository_name, reference, registry_id=registry_id, platform=platform)
    downloads = client.downloads(crew or Crew())
    return _Reader(image, downloads, limit).read(path)


class _Reader:
    """The layered view of one image, layers scanned lazily from the top."""

    def __init__(self, image: Image, downloads: Downloads, limit: int) -> None:
        self._image = image
        self._downloads = downloads
        self._limit = limit
        self._metas: list[_Meta] = []
        self._content: dict[tuple[int, tuple[str, ...]], bytes] = {}
        self._want: tuple[str, ...] = ()

    def missing(self, path: str, why: str) -> FileNotInImage:
        return FileNotInImage(
            f"{path[:200]!r} is not a file in {self._image.repository_name}:"
            f"{self._image.reference[:80]}: {why}",
            path=path,
            image=self._image.ref,
        )

    def read(self, path: str) -> bytes:
        todo = [p for p in path.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                resolved = resolved[:-1]
                continue
            here = (*resolved, name)
            # The path read if no more links intervene: its bytes are kept on the way.
            self._want = (*here, *todo)
            found = self._lookup(here)
            if found is None:
                raise self.missing(path, "no such file")
            index, member = found
            if member is not None and member.issym():
                hops += 1
                if hops > MAX_HOPS:
                    raise self.missing(path, f"more than {MAX_HOPS} symlinks")
                if member.linkname.startswith("/"):
                    resolved = []
                todo = [p for p in member.linkname.split("/") if p not in ("", ".")] + todo
                continue
            if todo:
                if member is not None and not member.isdir():
                    raise self.missing(path, f"/{'/'.join(here)} is not a directory")
                resolved.append(name)
                continue
            if member is None or member.isdir():
                raise self.missing(path, "a directory")
            if member.islnk():
                return self._linked(index, member, path)
            if not member.isreg():
                raise self.missing(path, "not a regular file")
            return self._file(index, here, path)
        raise self.missing(path, "the root is a directory")

    def _linked(self, index: int, member: tarfile.TarInfo, path: str) -> bytes:
        target = split_name(member.linkname)
        if not target:
            raise self.missing(path, "a hardlink out of the image")
        # Usually in the same layer; else as the layers below it show that path.
        linked = self._lookup(tuple(target), index)
        if linked is None or linked[1] is None or not linked[1].isreg():
            raise self.missing(path, "its hardlink target is not a file in the image")
        return self._file(linked[0], tuple(target), path)

    def _lookup(
        self, path: tuple[str, ...], index: int = 0
    ) -> tuple[int, tarfile.TarInfo | None] | None:
        """The topmost layer's entry at *path* (None for an implied directory), or None
        if no layer has it or an upper layer hides it; from layer *index* down."""
        while True:
            meta = self._meta(index)
            if meta is None:
                return None
            if path in meta.entries:
                return index, meta.entries[path]
            if path in meta.dirs:
                return index, None
            for i in range(1, len(path) + 1):
                if path[:i] in meta.whiteouts:
                    return None
                ancestor = meta.entries.get(path[: i - 1])
                if i > 1 and ancestor is not None and not ancestor.isdir():
                    return None  # replaced by a non-directory in this layer
                if path[: i - 1] in meta.opaque:
                    return None
            index += 1

    def _meta(self, index: int) -> _Meta | None:
        if index >= len(self._image.layers):
            return None
        if index == len(self._metas):
            self._metas.append(self._scan(index, self._want))
        return self._metas[index]

    def _file(self, index: int, path: tuple[str, ...], asked: str) -> bytes:
        if (index, path) not in self._content:
            self._scan(index, path)
        if (index, path) not in self._content:
            raise self.missing(asked, "its hardlink target is not in the layer")
        return self._content[index, path]

    def _scan(self, index: int, want: tuple[str, ...]) -> _Meta:
        # Layer 0 is the top: layers are read from the last one down.
        descriptor = self._image.layers[len(self._image.layers) - 1 - index]
        layer = LayerRef(self._image.repository_name, descriptor.digest, self._image.registry_id)
        meta = _Meta()
        entries = _layer_entries(
            self._downloads,
            image=self._image.ref,
            layer=layer,
            descriptor=descriptor,
            diff_id=None,
            budget=[0],
            limits=(MAX_SIZE, MAX_ENTRIES),
            counter=[0],
        )
        for tar, member in entries:
            parts = split_name(member.name)
            if not parts:
                continue
            key = tuple(parts)
            for i in range(1, len(key)):
                meta.dirs.add(key[:i])
            kind = whiteout_kind(key[-1])
            if kind == "opaque":
                meta.opaque.add(key[:-1])
            elif kind == "whiteout":
                meta.whiteouts.add((*key[:-1], key[-1][len(_WH) :]))
            elif kind is None:
                meta.entries[key] = member
                if key == want and member.isreg():
                    if member.size > self._limit:
                        raise BlobTooLarge(
                            f"/{'/'.join(key)} is {member.size} bytes, over max_size={self._limit}",
                            size=member.size,
                            limit=self._limit,
                            layer=layer,
                            image=self._image.ref,
                        )
                    source = tar.extractfile(member)
                    assert source is not None
                    self._content[index, key] = source.read()
        return meta
