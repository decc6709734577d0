"""
`LayerClient`: validated inputs, typed errors, one retry layer, verified downloads,
and images (each method a thin front on its core: `_images`, `_stream`; the methods
that move bytes are `_operations`', run here in the caller's thread).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

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
from ._operations import Operations, arguments_checker, method_from
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

P = ParamSpec("P")
T = TypeVar("T")


def _run_here(
    operation: Callable[Concatenate[Operations, P], T],
) -> Callable[Concatenate[LayerClient, P], T]:
    """`LayerClient`'s method for *operation*: run in the caller's thread."""
    check = arguments_checker(operation)

    def method(self: LayerClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        check(args, kwargs)
        self._check_open()
        return operation(Operations(_Port(self)), *args, **kwargs)

    return method_from(method, operation, "LayerClient")


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

    download_layer = _run_here(Operations.download_layer)
    get_config = _run_here(Operations.get_config)
    pull_image = _run_here(Operations.pull_image)
    export_rootfs = _run_here(Operations.export_rootfs)
    read_file = _run_here(Operations.read_file)

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


@attrs.frozen
class _Port:
    """`_operations.Port` on a `LayerClient`: what an operation may use of it, and no more."""

    _client: LayerClient
    #: Each operation makes its own (a pull's, an export's) when it needs one.
    crew: Crew | None = None

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
        self, repository_name: str, layer_digests: Iterable[str], *, registry_id: str | None
    ) -> dict[str, LayerUrl | ECRError]:
        return self._client.get_layer_urls(repository_name, layer_digests, registry_id=registry_id)

    def downloads(self, crew: Crew | None = None) -> Downloads:
        return self._client._downloads(crew)
