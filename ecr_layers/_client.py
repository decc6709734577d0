"""
`LayerClient`: validated inputs, typed errors, one retry layer, verified downloads,
and images (each method a thin front on its core: `_images`, `_stream`, `_pull`).
"""

from __future__ import annotations

import io
import os
import pathlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
from botocore.config import Config

from . import _retry
from ._botocore import (
    check_arguments,
    deadline_of,
    make_client,
    mapped_errors,
    policies,
    watch,
)
from ._exceptions import ConfigurationError, ECRError, LayerRef
from ._lookups import batch, check_workers, kept, layer_url, params_of
from ._retry import RetryBudget, RetryPolicy
from ._url import LayerUrl, redact_url
from ._validation import Validator, rules_from_model

if TYPE_CHECKING:
    import boto3
    import botocore.session
    import urllib3
    from types_boto3_ecr.client import ECRClient

    from ._host import Crew, Downloads
    from ._manifest import Descriptor, Image
    from ._rootfs import Export

#: The default cap on a config blob read into memory.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
# `_rootfs`'s defaults, repeated so that importing the client does not import tarfile
# (tests/test_rootfs.py checks they agree).
_MAX_UNPACKED = 16 * 1024**3
_MAX_ENTRIES = 1_000_000
_MAX_FILE = 256 * 1024**2


@attrs.define(init=False, repr=False)
class LayerClient:
    """Gets layers' download URLs with validated inputs, typed errors and one retry layer.

    Make one and keep it for the life of the application: it holds a botocore
    client, two connection pools (the API's and the downloads'), its credentials and
    a retry budget.  ``close()`` it, or use it as a context manager, when done.

    With no arguments, the client comes from the standard AWS configuration chain
    (environment, shared config and credentials files, ``AWS_ENDPOINT_URL_ECR`` /
    ``AWS_ENDPOINT_URL``).  *session* may be a boto3 or botocore session;
    *config* is merged over ecr-layers' own (whose botocore retries stay off).

    *retry_policy* governs API calls; *download_retry_policy* downloads, where
    ``attempts`` counts tries in a row without progress and ``timeout`` is the whole
    download's deadline (default: the API policy's waits and attempts, and an hour).

    Given an existing *client*, ecr-layers cannot turn its botocore retries off.
    So that the two layers never multiply, when that client retries by itself and
    no *retry_policy* is given, ecr-layers makes a single attempt per API call and
    leaves retrying to botocore; an explicit *retry_policy* with more than one
    attempt on such a client warns that requests per call can reach the product.
    Downloads never pass through botocore, so they keep their own policy.
    """

    _ecr: ECRClient
    _retry_policy: RetryPolicy
    _download_retry_policy: RetryPolicy
    _validator: Validator
    _owns_ecr: bool
    #: Shared by every call of this client (and its downloads' URL renewals).
    budget: RetryBudget = attrs.Factory(RetryBudget)
    _pool: urllib3.PoolManager | None = None
    _pool_lock: threading.Lock = attrs.Factory(threading.Lock)
    _closed: bool = False

    def __init__(
        self,
        client: ECRClient | None = None,
        *,
        session: boto3.Session | botocore.session.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        profile_name: str | None = None,
        config: Config | None = None,
        retry_policy: RetryPolicy | None = None,
        download_retry_policy: RetryPolicy | None = None,
    ) -> None:
        check_arguments(
            client,
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
            profile_name=profile_name,
            config=config,
            retry_policy=retry_policy,
            download_retry_policy=download_retry_policy,
        )
        owns = client is None
        api_policy, download_retry_policy = policies(client, retry_policy, download_retry_policy)
        if client is None:
            client = make_client(session, region_name, endpoint_url, profile_name, config)
        watch(client)
        self.__attrs_init__(
            ecr=client,
            retry_policy=api_policy,
            download_retry_policy=download_retry_policy,
            validator=rules_from_model(client.meta.service_model),
            owns_ecr=owns,
        )

    @property
    def ecr(self) -> ECRClient:
        """The botocore ECR client underneath."""
        return self._ecr

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of API calls."""
        return self._retry_policy

    @property
    def download_retry_policy(self) -> RetryPolicy:
        """The retry policy of downloads: tries without progress, and the whole deadline."""
        return self._download_retry_policy

    def __repr__(self) -> str:
        meta = self._ecr.meta
        return (
            f"LayerClient(endpoint_url={redact_url(meta.endpoint_url)!r}, "
            f"region_name={meta.region_name!r}, retry_policy={self._retry_policy!r}, "
            f"download_retry_policy={self._download_retry_policy!r}"
            + (", closed=True)" if self._closed else ")")
        )

    def close(self) -> None:
        """Release the connection pools (and the botocore client, if this one made it).

        Idempotent; a closed client refuses further calls with `ConfigurationError`.
        """
        if self._closed:
            return
        self._closed = True
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.clear()
        if self._owns_ecr:
            self._ecr.close()

    def __enter__(self) -> LayerClient:
        self._check_open()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def get_layer_url(
        self, repository_name: str, layer_digest: str, *, registry_id: str | None = None
    ) -> LayerUrl:
        """Return the pre-signed download URL of a layer referenced by an image.

        Raises `InvalidParameter` before sending anything if an input breaks the
        API's rules, and a typed `ECRError` for every failure after that.
        """
        return self._get(self._validator.params(repository_name, layer_digest, registry_id))

    def get_layer_urls(
        self,
        repository_name: str,
        layer_digests: Iterable[str],
        *,
        registry_id: str | None = None,
        max_workers: int = 16,
    ) -> dict[str, LayerUrl | ECRError]:
        """Look up many layers' URLs at once; return each digest's URL or error, in input order.

        Every digest is validated before any request (`InvalidParameter` for the
        first bad one).  Lookups run on a bounded thread pool sharing this client's
        connection pool; one failure is reported in its slot and sinks no other.
        A digest given twice is looked up once.
        """
        self._check_open()
        digests, requests = batch(self._validator, repository_name, layer_digests, registry_id)
        max_workers = check_workers(max_workers)
        if not requests:
            return {}
        pool_size = getattr(self._ecr.meta.config, "max_pool_connections", 10)
        workers = max(1, min(max_workers, pool_size, len(requests)))
        if workers == 1:
            return {d: self._lookup(p) for d, p in zip(digests, requests, strict=True)}
        return self._lookup_all(digests, requests, workers)

    def _lookup_all(
        self, digests: list[str], requests: list[dict[str, Any]], workers: int
    ) -> dict[str, LayerUrl | ECRError]:
        """Look *requests* up on *workers* threads.  A Ctrl-C stops them all at once:
        queued lookups never start, and those in flight have their sockets shut and
        their waits between tries ended (a pool's own exit would run every queued one)."""
        from concurrent.futures import ThreadPoolExecutor

        from ._host import result
        from ._watchdog import Scope, enter_scope

        stop, scope = threading.Event(), Scope(None)

        def lookup(params: dict[str, Any]) -> LayerUrl | ECRError:
            previous = enter_scope(scope)  # each API call's scope is a child: stopped with it
            try:
                return self._lookup(params, stop)
            finally:
                enter_scope(previous)

        pool = ThreadPoolExecutor(workers, thread_name_prefix="ecr-layers-lookup")
        try:
            futures = [pool.submit(lookup, params) for params in requests]
            return {digest: result(future) for digest, future in zip(digests, futures, strict=True)}
        except BaseException:
            stop.set()
            scope.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _lookup(
        self, params: dict[str, Any], stop: threading.Event | None = None
    ) -> LayerUrl | ECRError:
        try:
            return self._get(params, stop)
        except ECRError as exc:
            return kept(exc)

    def _get(self, params: dict[str, Any], stop: threading.Event | None = None) -> LayerUrl:
        deadline = deadline_of(self._retry_policy)  # of the whole call, retries included
        return _retry.call(
            lambda: self._get_once(params, deadline),
            self._retry_policy,
            budget=self.budget,
            stop=stop,
        )

    def lookup_once(self, layer: LayerRef) -> LayerUrl:
        """One GetDownloadUrlForLayer attempt, never retried here: for callers that retry."""
        return self._get_once(params_of(layer), deadline_of(self._retry_policy))

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
            self._validator,
            repository_name,
            layer_digest,
            destination,
            registry_id=registry_id,
            progress=progress,
            parallel=parallel,
            verify=verify,
            allow_http=allow_http,
        )
        return download(self._downloads(), request)

    def _downloads(self, crew: Crew | None = None) -> Downloads:
        from ._host import Downloads

        return Downloads(self, self._http(), self._download_retry_policy, self.budget, crew)

    def _http(self) -> urllib3.PoolManager:
        self._check_open()
        with self._pool_lock:
            if self._pool is None:
                from ._host import new_pool

                self._pool = new_pool()
            return self._pool

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this LayerClient is closed")

    def _get_once(self, params: dict[str, Any], deadline: float | None = None) -> LayerUrl:
        self._check_open()
        with mapped_errors(params, deadline=deadline):
            response = self._ecr.get_download_url_for_layer(**params)
        return layer_url(response, params)

    # -- images ----------------------------------------------------------------------

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
        from . import _images

        self._check_open()
        return _images.get_image(
            self._ecr,
            self._validator,
            lambda attempt: _retry.call(attempt, self._retry_policy, budget=self.budget),
            repository_name,
            reference,
            deadline=deadline_of(self._retry_policy),
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
        when the manifest already says so).  As for a layer, the config's size in the
        manifest bounds what the host may send (`BlobTooLarge`), and fewer bytes are
        `InvalidResponse`; so is JSON nested more than 64 levels deep.
        """
        from . import _images

        limit, given = _images.config_request(image, reference, registry_id, platform, max_bytes)
        found = given or self.get_image(
            image,  # type: ignore[arg-type]
            reference,  # type: ignore[arg-type]
            registry_id=registry_id,
            platform=platform,
        )
        from ._stream import read_blob

        blob, size = _images.config_blob(found, limit)
        data = read_blob(self._downloads(), blob, size)
        return _images.parse_config(data, found, limit)

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
        from ._stream import STREAM_BUFFER, open_blob

        layer, limit = blob_request(self._validator, repository_name, layer_digest, registry_id)
        return io.BufferedReader(open_blob(self._downloads(), layer, limit), STREAM_BUFFER)

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
            _PullClient(self),
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_parallel=max_parallel,
            progress=progress,
        )

    def export_rootfs(
        self,
        repository_name: str,
        reference: str,
        destination: str | os.PathLike[str],
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_size: int = _MAX_UNPACKED,
        max_entries: int = _MAX_ENTRIES,
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
        from . import _rootfs

        self._check_open()
        return _rootfs.export(
            _PullClient(self),
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_size=max_size,
            max_entries=max_entries,
            keep_special_bits=keep_special_bits,
            progress=progress,
        )

    def read_file(
        self,
        repository_name: str,
        reference: str,
        path: str,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_size: int = _MAX_FILE,
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
        from . import _rootfs

        self._check_open()
        return _rootfs.read_file(
            _PullClient(self),
            repository_name,
            reference,
            path,
            registry_id=registry_id,
            platform=platform,
            max_size=max_size,
        )


@attrs.frozen
class _PullClient:
    """`_pull.Client` on a `LayerClient`: what a pull may use of it, and no more."""

    _client: LayerClient

    @property
    def validator(self) -> Validator:
        return self._client._validator

    def get_image(
        self, repository_name: str, reference: str, *, registry_id: str | None, platform: str | None
    ) -> Image:
        return self._client.get_image(
            repository_name, reference, registry_id=registry_id, platform=platform
        )

    def get_layer_urls(
        self, repository_name: str, layer_digests: list[str], *, registry_id: str | None
    ) -> dict[str, LayerUrl | ECRError]:
        return self._client.get_layer_urls(repository_name, layer_digests, registry_id=registry_id)

    def downloads(self, crew: Crew) -> Downloads:
        return self._client._downloads(crew)
