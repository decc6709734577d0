"""
`LayerClient`'s image methods: ``get_image``, ``get_config``, ``open_layer`` and
``pull_image``, each a thin front on the shared cores (`_images`, `_stream`, `_pull`)
with the client's policies, budget and connection pool.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._exceptions import LayerRef

if TYPE_CHECKING:
    from ._client import LayerClient
    from ._manifest import Descriptor, Image

#: The default cap on a config blob read into memory.
MAX_CONFIG_BYTES = 8 * 1024 * 1024

#: The buffer `open_layer`'s reader puts in front of the connection.
STREAM_BUFFER = 256 * 1024


class ImageMethods:
    """Mixed into `LayerClient`: the image as the unit of work.

    Each method works on the client it is mixed into (``self._client``), whose
    policies, budget, validator and pools it uses as they are.
    """

    @property
    def _client(self) -> LayerClient:
        return cast("LayerClient", self)

    def get_image(
        self,
        repository_name: str,
        reference: str,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
    ) -> Image:
        """Return the image manifest a tag or digest names, verified, as an `Image`.

        One ``BatchGetImage`` (two through an index or manifest list, which is
        resolved to the manifest for *platform*, ``"os/arch[/variant]"``, by default
        this machine's, as docker picks it; attestations are never chosen).  The
        manifest's bytes must hash to the digest the service reports, and to
        *reference* when it is a digest (`DigestMismatch`); they are capped at 4 MiB
        (`BlobTooLarge`).  Errors: `InvalidParameter` before any request;
        `ImageNotFound`, `PlatformNotFound`, `UnsupportedMediaType` (schema 1) and
        a typed error for each of BatchGetImage's failure codes.
        """
        from . import _images, _retry

        client = self._client
        client._check_open()
        return _images.get_image(
            client._ecr,
            client._validator,
            lambda attempt: _retry.call(attempt, client._retry_policy, budget=client.budget),
            repository_name,
            reference,
            registry_id=registry_id,
            platform=platform,
        )

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
        when the manifest already says so).
        """
        from . import _images

        limit, given = _images.config_request(image, reference, registry_id, platform, max_bytes)
        found = given or self.get_image(
            image,  # type: ignore[arg-type]
            reference,  # type: ignore[arg-type]
            registry_id=registry_id,
            platform=platform,
        )
        with self._open_blob(_images.config_blob(found, limit), limit=limit) as stream:
            data = stream.read()
        return _images.parse_config(data, found)

    def open_layer(
        self,
        repository_name: str,
        layer_digest: str | Descriptor,
        *,
        registry_id: str | None = None,
    ) -> io.BufferedReader:
        """Open a layer (or any blob of an image) for reading, straight from its URL.

        Use it as a context manager; nothing is written to disk.  A cut connection
        resumes with ``Range`` and an expired URL is renewed, within the
        `download_retry_policy` (its ``timeout`` runs from the open).  The bytes are
        hashed as they are read, and the read that reaches the end raises
        `DigestMismatch` when they are wrong, so a consumer never sees a clean end
        of a corrupt layer.  The check needs that end: a consumer that stops early
        (``tarfile`` stops at the archive's end marker) must read the rest,
        ``stream.read()``, to have the whole layer verified.  Closing early releases
        the connection, unverified.  The URL is looked up here, so `LayersNotFound`
        and kin are raised by this call.  *layer_digest* may be a `Descriptor` from an
        `Image`, whose ``size`` then bounds what is read (`BlobTooLarge` beyond it).
        """
        from ._images import blob_request

        layer, limit = blob_request(
            self._client._validator, repository_name, layer_digest, registry_id
        )
        return self._open_blob(layer, limit=limit)

    def _open_blob(self, layer: LayerRef, *, limit: int | None = None) -> io.BufferedReader:
        from ._host import Job
        from ._stream import LayerStream
        from ._transfer import check_digest

        client = self._client
        algorithm = check_digest(layer.layer_digest, layer)
        policy = client._download_retry_policy
        deadline = None if policy.timeout is None else time.monotonic() + policy.timeout
        job = Job(
            client, client._http(), layer, False, policy, client.budget, deadline, limit=limit
        )
        job.retrying(job.url)
        return io.BufferedReader(LayerStream(job, algorithm), STREAM_BUFFER)

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
        from . import _pull

        return _pull.pull(
            self._client,
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_parallel=max_parallel,
            progress=progress,
        )
