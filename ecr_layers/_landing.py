"""
Where a download lands: the destination, temporary names, leftovers, atomic landing.

A download is written to a temporary file beside its target and renamed into place
only once verified: fsync the file, rename, fsync the directory (without the last
step a power cut can lose the rename, and with it a file reported as landed).
Every problem with the destination is found before any request is sent, and is a
`DestinationError`, which is also an `OSError`.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import hashlib
import os
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import IO

import attrs

from ._exceptions import DestinationError, InvalidParameter, LayerRef

_TEMP_MARK = ".ecr-layers-"
_TEMP = re.compile(
    r"\.(?P<stem>.*)\.(?P<tag>[0-9a-f]{8})\.ecr-layers-(?P<pid>\d+)-[0-9a-f]{8}\.part"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Characters the temporary name adds around the target's (possibly cut) name:
#: "." + ".<tag>" + ".ecr-layers-" + pid (up to 10 digits) + "-<8 hex>.part".
_TEMP_OVERHEAD = 1 + 9 + len(_TEMP_MARK) + 10 + 1 + 8 + len(".part")


def safe_file_name(digest: str) -> str:
    """Return a file name for *digest* that cannot leave its directory (``..:ab`` included)."""
    name = _UNSAFE.sub("_", digest.replace(":", "-"))
    # Every digest has a ':', so the name has a '-': never '', '.' or '..'.  A leading
    # dot would hide the file and could clash with our temporary files' names.
    return "_" + name[1:] if name.startswith(".") else name


def _name_max(directory: pathlib.Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def resolve_destination(destination: object, digest: str, layer: LayerRef) -> pathlib.Path:
    """Return the file to write for *destination*, checked; raise before anything is sent.

    *destination* is a file path, or a directory to put the layer in (an existing
    one, or any path written with a trailing slash, which must then exist).
    """
    if not isinstance(destination, str | os.PathLike):
        raise InvalidParameter(
            f"destination must be a str or os.PathLike, got {type(destination).__name__}",
            parameter="destination",
        )
    raw = os.fspath(destination)
    if not isinstance(raw, str):
        raise InvalidParameter("destination must be a str path, not bytes", parameter="destination")

    def fail(why: str, code: int, path: str) -> DestinationError:
        return DestinationError(
            f"{path!r}: {why}", errno=code, path=path, layer=layer, code=errnos.errorcode[code]
        )

    if "\0" in raw or not raw:
        raise fail("not a usable path (empty, or a NUL character in it)", errnos.EINVAL, raw)
    try:
        return _checked(pathlib.Path(raw), raw, digest, fail)
    except OSError as exc:  # a stat that fails: too long a path, a loop, no permission
        if isinstance(exc, DestinationError):
            raise
        raise fail(os.strerror(exc.errno or errnos.EIO), exc.errno or errnos.EIO, raw) from None


def _checked(
    path: pathlib.Path, raw: str, digest: str, fail: Callable[[str, int, str], DestinationError]
) -> pathlib.Path:
    if raw.endswith(("/", os.sep)) or path.is_dir():
        if not path.is_dir():
            raise fail("the directory does not exist", errnos.ENOENT, raw)
        # safe_file_name is what keeps this inside the directory (a hypothesis test
        # holds it to that); the target itself is replaced, never followed.
        path = path / safe_file_name(digest)
    parent = path.parent
    if not parent.is_dir():
        raise fail("the directory to write into does not exist", errnos.ENOENT, str(parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise fail("the directory is not writable", errnos.EACCES, str(parent))
    if len(os.fsencode(path.name)) > _name_max(parent):
        raise fail("the file name is longer than the file system allows", errnos.ENAMETOOLONG, raw)
    if path.is_dir():
        raise fail("is a directory", errnos.EISDIR, str(path))
    # A symlink is replaced, never followed; anything else that is not a regular file
    # (/dev/null, a fifo, a socket) is refused: replacing a device node as root breaks
    # the machine, and writing into one cannot be verified.
    if path.exists() and not path.is_symlink() and not path.is_file():
        raise fail("exists and is not a regular file", errnos.EEXIST, str(path))
    return path


def temp_path(target: pathlib.Path) -> pathlib.Path:
    """Return a fresh temporary path beside *target* whose name always fits ``NAME_MAX``.

    ``.<name, cut to fit>.<tag>.ecr-layers-<pid>-<random>.part``: the tag (a hash of
    the whole name) ties a cut name to its target; the pid tells a leftover from a
    download still running.
    """
    room = _name_max(target.parent) - _TEMP_OVERHEAD
    stem = os.fsencode(target.name)[: max(room, 1)].decode("utf-8", "ignore")
    return target.parent / (
        f".{stem}.{_tag(target.name)}{_TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}.part"
    )


def _tag(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:8]


def clean_leftovers(target: pathlib.Path) -> list[pathlib.Path]:
    """Remove temporary files a killed download to *target* left behind; return them.

    Those of a process that is still running are another download in progress: kept.
    """
    removed = []
    tag = _tag(target.name)
    for candidate in target.parent.glob(f".*.{tag}{_TEMP_MARK}*.part"):
        match = _TEMP.fullmatch(candidate.name)
        if match is None or match["tag"] != tag or alive(int(match["pid"])):
            continue
        if not target.name.startswith(match["stem"]):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def alive(pid: int) -> bool:
    """Whether process *pid* (whose files these are) may still be running."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@attrs.define
class Landing:
    """A temporary file that becomes *target* only through `commit`, or disappears."""

    target: pathlib.Path
    layer: LayerRef
    temp: pathlib.Path = attrs.field(init=False)
    file: IO[bytes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        clean_leftovers(self.target)
        self.temp = temp_path(self.target)
        with self.os_errors():
            # Unbuffered: the writer hands over whole buffers, and "x" never
            # follows or reuses a file someone else put there.
            self.file = self.temp.open("xb", buffering=0)

    def error(self, exc: OSError) -> DestinationError:
        """Return the `DestinationError` for the file system's *exc* (ENOSPC, EIO, …)."""
        code = exc.errno or errnos.EIO
        return DestinationError(
            f"cannot write {str(self.target)!r}: {os.strerror(code)}",
            errno=code,
            path=str(self.target),
            layer=self.layer,
            code=errnos.errorcode.get(code, "DestinationError"),
        )

    @contextlib.contextmanager
    def os_errors(self) -> Iterator[None]:
        """Raise the file system's errors as `DestinationError`."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, DestinationError):
                raise
            raise self.error(exc) from exc

    def commit(self) -> pathlib.Path:
        """Make the written bytes durable and put them at the target; return it."""
        with self.os_errors():
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.target)
            directory = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return self.target

    def discard(self) -> None:
        """Close and remove the temporary file (after a failure); never raises."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()
