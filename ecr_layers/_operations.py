"""
What either client does with bytes, written once: `download_layer`, `get_config`,
`pull_image`, `export_rootfs` and `read_file`, with their public signatures and
documentation.

Each runs on a `Port`, the little it needs of a client.  `LayerClient` runs them in
the caller's thread on its own port; `AsyncLayerClient` runs the same methods in one
of its worker threads, on a port whose API calls go back to its event loop.  The
clients' methods are made from these by `method_from`, so neither writes a signature
that could drift from the other's.
"""

from __future__ import annotations

import inspect

# os and pathlib at run time, not only for type checking: typing.get_type_hints (and so
# Sphinx) reads the public signatures' names here.
import os
import pathlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

if TYPE_CHECKING:
    from ._exceptions import ECRError
    from ._host import Crew, Downloads
    from ._manifest import Image
    from ._rootfs import Export
    from ._url import LayerUrl
    from ._validation import Validator

F = TypeVar("F", bound=Callable[..., Any])

#: The default cap on a config blob read into memory.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
# `_rootfs`'s defaults, repeated so that importing a client does not import tarfile
# (tests/test_rootfs.py checks they agree).
MAX_UNPACKED = 16 * 1024**3
MAX_ENTRIES = 1_000_000
MAX_FILE = 256 * 1024**2


class Port(Protocol):
    """What an operation (and `_pull`, `_rootfs`) may use of a client, and no more."""

    @property
    def crew(self) -> Crew | None:
        """What stops the operation's downloads at once (the asyncio task's), or None."""

    @property
    def validator(self) -> Validator: ...

    def get_image(
        self, repository_name: str, reference: str, *, registry_id: str | None, platform: str | None
    ) -> Image: ...

    def get_layer_urls(
        self, repository_name: str, layer_digests: Iterable[str], *, registry_id: str | None
    ) -> dict[str, LayerUrl | ECRError]: ...

    def downloads(self, crew: Crew | None = None) -> Downloads: ...


@attrs.frozen
class Operations:
    """The byte-moving methods of both clients, on one client's `Port`."""

    _port: Port

    def download_layer(
        self,
        repository_name: str,
        layer_digest: str,
        destination: str | os.PathLike[str],
        *,
        registry_id: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        parallel: int | None = None,
        verify: bool = True,
        allow_http: bool = False,
    ) -> pathlib.Path:
        """Download a layer to *destination* (a file, or a directory to put it in); return its path.

        Everything is checked before a request is sent: the arguments
        (`InvalidParameter`), the digest (`UnsupportedDigest` unless *verify* is
        False) and the destination (`DestinationError`: its directory must exist and
        be writable, and a path ending in a slash names a directory).  The bytes are
        hashed while they stream and land at the destination only if they match
        the digest (else `DigestMismatch`, and nothing is left behind).  Dropped
        connections resume from the last byte; expired URLs are renewed; the
        `download_retry_policy` bounds it all (see the README's retry section).

        *parallel* is how many connections fetch 4 MiB byte ranges at once, 1 to 16.
        None (the default) decides after the first 4 MiB chunk: 4 connections for
        layers of 64 MiB or more when that chunk arrived slower than 200 MiB/s (a
        capped link), else 1.  *progress* is called with (bytes done, total bytes or
        None).  Only https URLs are followed, or http to a loopback host, unless
        *allow_http*.
        """
        from ._download import DownloadRequest, download

        request = DownloadRequest.build(
            self._port.validator,
            repository_name,
            layer_digest,
            destination,
            registry_id=registry_id,
            progress=progress,
            parallel=parallel,
            verify=verify,
            allow_http=allow_http,
        )
        return download(self._port.downloads(), request)

    def get_config(
        self,
        image: Image | str,
        reference: str | None = None,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_bytes: int = MAX_CONFIG_BYTES,
    ) -> dict[str, Any]:
        """Return an image's config (its JSON object), read into memory and verified.

        *image* is an `Image`, or a repository name with *reference* (and then
        *registry_id* and *platform* as for `get_image`).  A config over *max_bytes*
        is refused with `BlobTooLarge` before reading past the cap (before any request
        when the manifest already says so).  As for a layer, the config's size in the
        manifest bounds what the host may send (`BlobTooLarge`), and fewer bytes are
        `InvalidResponse`; so is JSON nested more than 64 levels deep.
        """
        from . import _images
        from ._stream import read_blob

        limit, given = _images.config_request(image, reference, registry_id, platform, max_bytes)
        found = given or self._port.get_image(
            image,  # type: ignore[arg-type]
            reference,  # type: ignore[arg-type]
            registry_id=registry_id,
            platform=platform,
        )
        blob, size = _images.config_blob(found, limit)
        data = read_blob(self._port.downloads(), blob, size)
        return _images.parse_config(data, found, limit)

    def pull_image(
        self,
        repository_name: str,
        reference: str,
        destination: str | os.PathLike[str],
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_parallel: int = 4,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Image:
        """Pull an image into an OCI image layout at *destination*; return the `Image`.

        The layout (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``) is created
        if missing, and several images accumulate in it, each named in ``index.json``
        by its reference (``org.opencontainers.image.ref.name``).  Every blob is
        verified before it gets its content-addressed name, and blobs already there
        are checked, not fetched again.  Up to *max_parallel* (1 to 16) blobs download
        at once, on this client's connection pool.  ``index.json`` is replaced last,
        atomically: a pull that fails or is killed leaves it as it was.  *progress*
        is called with (bytes done, total bytes) for the whole image.
        """
        from ._pull import pull

        return pull(
            self._port,
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_parallel=max_parallel,
            progress=progress,
            crew=self._port.crew,
        )

    def export_rootfs(
        self,
        repository_name: str,
        reference: str,
        destination: str | os.PathLike[str],
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_size: int = MAX_UNPACKED,
        max_entries: int = MAX_ENTRIES,
        keep_special_bits: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Export:
        """Unpack an image's layers into *destination* as its root filesystem; return an `Export`.

        *destination* must be missing or an empty directory (else `InvalidParameter`,
        before any request).  The root is built in a directory beside it and renamed
        into place when every layer has been applied and verified twice: its
        compressed digest, and its uncompressed tar against the config's
        ``rootfs.diff_ids`` (`DigestMismatch`).  A failed export leaves nothing.
        Whiteouts follow the OCI rules; no entry can write outside the root
        (`UnsafeLayer` for those refused); device nodes and fifos are not created but
        listed in ``Export.skipped``; setuid/setgid bits are dropped unless
        *keep_special_bits*.  More than *max_size* unpacked bytes (default 16 GiB) or
        *max_entries* entries (default 1,000,000) is `BlobTooLarge`.  gzip and plain
        tar layers (OCI and Docker); zstd needs ``ecr-layers[zstd]``
        (`UnsupportedMediaType`).  *progress* is called with (compressed bytes done,
        total) after each layer.
        """
        from ._rootfs import export

        return export(
            self._port,
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_size=max_size,
            max_entries=max_entries,
            keep_special_bits=keep_special_bits,
            progress=progress,
            crew=self._port.crew,
        )

    def read_file(
        self,
        repository_name: str,
        reference: str,
        path: str,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_size: int = MAX_FILE,
    ) -> bytes:
        """Return the bytes of the file at *path* as the image's root shows it.

        Layers are read from the top down, stopping at the first that has the path
        or hides it (a whiteout, an opaque directory): a file in the top layer costs
        one blob download.  Symlinks are followed inside the image (absolute ones from
        its root, at most 40).  Each layer read is verified against its digest (its
        ``diff_id`` is not checked: the config is not fetched).  A missing, hidden or
        non-file path is `FileNotInImage` (also a `FileNotFoundError`); a file over
        *max_size* bytes (default 256 MiB) is `BlobTooLarge`.
        """
        from ._rootfs import read_file

        return read_file(
            self._port,
            repository_name,
            reference,
            path,
            registry_id=registry_id,
            platform=platform,
            max_size=max_size,
            crew=self._port.crew,
        )


def method_from(made: F, original: Callable[..., Any], owner: str, doc: str | None = None) -> F:
    """Give *made* the name, signature and documentation of *original* (its own
    *doc* instead, if given), as a member of class *owner* (or, with ``""``, as a
    module-level function: then without *original*'s first parameter)."""
    made.__name__ = original.__name__
    made.__qualname__ = f"{owner}.{original.__name__}" if owner else original.__name__
    made.__doc__ = original.__doc__ if doc is None else doc
    signature = inspect.signature(original)
    annotations = dict(original.__annotations__)
    if not owner:
        first, *rest = signature.parameters.values()
        signature = signature.replace(parameters=rest)
        annotations.pop(first.name, None)
    made.__signature__ = signature  # type: ignore[attr-defined]
    # The type hints too (typing.get_type_hints, Sphinx), read in *original*'s module:
    # get_type_hints looks its names up in the globals of what __wrapped__ leads to.
    made.__annotations__ = annotations
    made.__wrapped__ = original  # type: ignore[attr-defined]
    return made


def arguments_checker(
    operation: Callable[..., Any],
) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
    """Return a check that raises `TypeError` for arguments *operation* cannot take,
    naming the public method (Python's own error would name `Operations`, and the
    asyncio client's would come from its worker thread, after the client opened)."""
    signature = inspect.signature(operation)
    name = operation.__name__

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}() {exc}") from None

    return check
