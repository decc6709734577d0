"""
`AsyncLayerClient`: the `LayerClient` contract for asyncio, on aiobotocore.

Only the transport is new here.  Validation (`_validation`), the error map
(`_mapping`), the retry engine and budget (`_retry`, driven by tenacity's async loop),
the lookup rules (`_lookups`) and the image rules (`_images.resolve`) are the ones the
synchronous client uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

import attrs
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from .._botocore import (
    check_arguments,
    client_config,
    creating,
    deadline_of,
    mapped_errors,
    policies,
)
from .._exceptions import ConfigurationError, ECRError, EndpointTimeout, ImageRef, LayerRef
from .._lookups import batch, check_workers, context, kept, layer_url, params_of
from .._operations import MAX_CONFIG_BYTES, Operations, arguments_checker, method_from
from .._retry import RetryBudget, RetryPolicy, call_async
from .._url import LayerUrl, check_endpoint_url, redact_url
from .._validation import Validator, rules_from_model
from .._watchdog import API_ANSWER_MAX, over_the_cap, stated_over_the_cap
from ._worker import Worker, run

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from types import CoroutineType, TracebackType

    import urllib3
    from aiobotocore.session import AioSession
    from types_aiobotocore_ecr.client import ECRClient

    from .._manifest import Descriptor, Image
    from ._stream import AsyncLayerStream

P = ParamSpec("P")
T = TypeVar("T")

#: Transfers that move at once, each in a worker thread of the client's.
_WORKERS = 16

_IN_A_WORKER = """

        Here it runs in one of this client's worker threads: the same engine, checks,
        bounds and guarantees as `LayerClient`'s, with its API calls sent back to this
        event loop.  Cancelling the task (``task.cancel()``, ``asyncio.timeout``) stops
        it within about a second, leaves no temporary file and closes its connections.
        """
_PROGRESS = """*progress* is called from the worker thread: keep it quick.
        """


def _in_a_worker(
    operation: Callable[Concatenate[Operations, P], T],
) -> Callable[Concatenate[AsyncLayerClient, P], CoroutineType[Any, Any, T]]:
    """`AsyncLayerClient`'s method for *operation*: run in one of its worker threads."""
    check = arguments_checker(operation)

    async def method(self: AsyncLayerClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        check(args, kwargs)
        return await self._transfer(lambda worker: operation(Operations(worker), *args, **kwargs))

    doc = (operation.__doc__ or "").rstrip() + _IN_A_WORKER
    if "progress" in inspect.signature(operation).parameters:
        doc += _PROGRESS
    # Typed as an ``async def`` is (pyright says CoroutineType; mypy accepts it where it
    # says Coroutine), so that the client satisfies a user's Protocol of async methods.
    made = cast("Callable[Concatenate[AsyncLayerClient, P], CoroutineType[Any, Any, T]]", method)
    return method_from(made, operation, "AsyncLayerClient", doc)


@attrs.define(init=False, repr=False)
class AsyncLayerClient:
    """Gets layers' download URLs and images' manifests, in asyncio, with the same
    validation, typed errors, retry policy and retry budget as `LayerClient`.

    Make one and keep it for the life of the application (a client per request
    throws away its connections); ``await client.close()`` it, or use ``async with``.
    Its aiobotocore client is opened on first use, in the running event loop, and
    belongs to that loop.  Arguments as for `LayerClient`; *session* is an
    aiobotocore session, *client* an aiobotocore ECR client (which ecr-layers then
    neither opens nor closes).
    """

    _validator: Validator
    _retry_policy: RetryPolicy
    _download_retry_policy: RetryPolicy
    _session: AioSession | None
    _settings: dict[str, Any]
    #: Shared by every call of this client.
    budget: RetryBudget = attrs.Factory(RetryBudget)
    _ecr: ECRClient | None = None
    _stack: contextlib.AsyncExitStack = attrs.Factory(contextlib.AsyncExitStack)
    _opening: asyncio.Lock | None = None
    _loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
    _http: urllib3.PoolManager | None = None
    #: The worker threads that run transfers; see `_worker`.
    _executor: ThreadPoolExecutor | None = None
    _active: set[Worker] = attrs.Factory(set)
    _closed: bool = False

    def __init__(
        self,
        client: ECRClient | None = None,
        *,
        session: AioSession | None = None,
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
        if session is not None and profile_name is not None:
            raise ConfigurationError("give either a session or a profile_name, not both")
        if endpoint_url is not None:
            check_endpoint_url(endpoint_url)  # before anything is built on it
        api_policy, download_policy = policies(client, retry_policy, download_retry_policy)
        with creating():
            if client is not None:
                model = client.meta.service_model
            else:
                import botocore.session

                try:
                    from aiobotocore.session import AioSession
                except ImportError:
                    raise ConfigurationError(
                        'ecr_layers.aio needs aiobotocore: pip install "ecr-layers[async]"'
                    ) from None

                session = session or AioSession(profile=profile_name)
                # aiobotocore reads the model only in a coroutine; the rules are botocore's
                # data either way, and are needed here, before the first await.
                model = botocore.session.Session().get_service_model("ecr")
        self.__attrs_init__(
            validator=rules_from_model(model),
            retry_policy=api_policy,
            download_retry_policy=download_policy,
            session=session,
            settings={
                "region_name": region_name,
                "endpoint_url": endpoint_url,
                "config": client_config(config),
            },
            ecr=client,
        )

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of API calls."""
        return self._retry_policy

    @property
    def download_retry_policy(self) -> RetryPolicy:
        """The retry policy of downloads: tries without progress, and the whole deadline."""
        return self._download_retry_policy

    def __repr__(self) -> str:
        endpoint = self._ecr.meta.endpoint_url if self._ecr is not None else None
        endpoint = endpoint or self._settings.get("endpoint_url")
        return (
            f"AsyncLayerClient(endpoint_url={redact_url(endpoint) if endpoint else None!r}, "
            f"retry_policy={self._retry_policy!r}, "
            f"download_retry_policy={self._download_retry_policy!r}"
            + (", closed=True)" if self._closed else ")")
        )

    async def __aenter__(self) -> AsyncLayerClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the aiobotocore client this client opened, and its connections.

        Idempotent; a closed client refuses further calls with `ConfigurationError`.
        """
        if self._closed:
            return
        self._closed = True
        if self._opening is not None:
            # An opening in progress finishes first, so that what it opens is closed too.
            async with self._opening:
                pass
        for worker in list(self._active):
            worker.closed = True
            worker.stop()
        if self._executor is not None:
            # The transfers just stopped end within a read: wait, so none outlives us.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._http is not None:
            self._http.clear()
        await self._stack.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this AsyncLayerClient is closed")

    async def _client(self) -> ECRClient:
        """The aiobotocore client, opened on first use (once, whatever the concurrency)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is not None and loop is not self._loop():
            # Its connections belong to the loop that opened them.
            raise ConfigurationError(
                "this AsyncLayerClient was opened in another event loop; make one per loop"
            )
        if self._ecr is not None:
            if self._loop is None:  # a client handed in: the loop of its first use
                self._loop = weakref.ref(loop)
                _CappedSend.install(self._ecr)
            return self._ecr
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ecr is None:
                assert self._session is not None
                with creating():
                    made = self._session.create_client("ecr", **self._settings)
                    ecr: ECRClient = await self._stack.enter_async_context(made)
                    _CappedSend.install(ecr)
                    if self._settings["endpoint_url"] is None:
                        # It came from the environment or the config files.
                        check_endpoint_url(ecr.meta.endpoint_url)
                # Weakly: a client must not keep its loop alive (the default clients are
                # kept per loop, in a mapping with weak keys).
                self._ecr, self._loop = ecr, weakref.ref(loop)
            self._check_open()  # closed while this call waited for the opening
            return self._ecr

    # -- layers ----------------------------------------------------------------------

    async def get_layer_url(
        self, repository_name: str, layer_digest: str, *, registry_id: str | None = None
    ) -> LayerUrl:
        """Return the pre-signed download URL of a layer; see `LayerClient.get_layer_url`."""
        params = self._validator.params(repository_name, layer_digest, registry_id)
        return await self._get(params)

    async def get_layer_urls(
        self,
        repository_name: str,
        layer_digests: Iterable[str],
        *,
        registry_id: str | None = None,
        max_workers: int = 16,
    ) -> dict[str, LayerUrl | ECRError]:
        """Look up many layers' URLs at once; see `LayerClient.get_layer_urls`.

        At most *max_workers* (and the connection pool's size) run at once.
        """
        self._check_open()
        digests, requests = batch(self._validator, repository_name, layer_digests, registry_id)
        max_workers = check_workers(max_workers)
        if not requests:
            return {}
        ecr = await self._client()
        pool = getattr(ecr.meta.config, "max_pool_connections", 10)
        gate = asyncio.Semaphore(max(1, min(max_workers, pool, len(requests))))

        async def lookup(params: dict[str, Any]) -> LayerUrl | ECRError:
            async with gate:
                try:
                    return await self._get(params)
                except ECRError as exc:
                    return kept(exc)

        results = await asyncio.gather(*(lookup(p) for p in requests))
        return dict(zip(digests, results, strict=True))

    async def lookup_once(self, layer: LayerRef) -> LayerUrl:
        """One GetDownloadUrlForLayer attempt, never retried here: for callers that retry."""
        return await self._get_once(params_of(layer))

    def _get(self, params: dict[str, Any]) -> Coroutine[Any, Any, LayerUrl]:
        # The retry engine's coroutine itself, not one around it: every frame in the
        # chain is passed through again each time the call resumes from the network.
        deadline = deadline_of(self._retry_policy)  # of the whole call, retries included
        return call_async(
            partial(self._get_once, params, deadline), self._retry_policy, budget=self.budget
        )

    async def _get_once(self, params: dict[str, Any], deadline: float | None = None) -> LayerUrl:
        ecr = self._ecr
        loop = self._loop() if self._loop is not None else None
        if ecr is None or self._closed or loop is not asyncio.get_running_loop():
            ecr = await self._client()  # the slow path: opening, or refusing
        if deadline is None:
            deadline = deadline_of(self._retry_policy)
        async with _Bound(deadline, params=params):
            with mapped_errors(params):
                response = await ecr.get_download_url_for_layer(**params)
        return layer_url(response, params)

    async def open_layer(
        self,
        repository_name: str,
        layer_digest: str | Descriptor,
        *,
        registry_id: str | None = None,
    ) -> AsyncLayerStream:
        """Open a layer (or any blob) for reading straight from its URL; see
        `LayerClient.open_layer`: the same stream, read in a worker thread.

        ``async with await client.open_layer(repo, digest) as stream:``, then
        ``await stream.read(n)``.  The URL is looked up here.
        """
        from .._images import blob_request
        from .._stream import open_blob
        from ._stream import AsyncLayerStream

        layer, limit = blob_request(self._validator, repository_name, layer_digest, registry_id)
        worker = self._worker()
        raw = await self._transfer(lambda w: open_blob(w.downloads(), layer, limit), worker)
        return AsyncLayerStream(raw, lambda read: self._transfer(lambda _: read(), worker))

    download_layer = _in_a_worker(Operations.download_layer)

    async def get_config(
        self,
        image: Image | str,
        reference: str | None = None,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
        max_bytes: int = MAX_CONFIG_BYTES,
    ) -> dict[str, Any]:
        # The image is looked up here, on the loop, and the shared operation is handed
        # it: from a worker, the lookup's round trips would hold one of the client's
        # threads waiting on this loop, and 48 calls at once took half as long again.
        from .._images import config_request

        _, given = config_request(image, reference, registry_id, platform, max_bytes)
        found = given or await self.get_image(
            image,  # type: ignore[arg-type]
            reference,  # type: ignore[arg-type]
            registry_id=registry_id,
            platform=platform,
        )
        return await self._transfer(
            lambda worker: Operations(worker).get_config(found, max_bytes=max_bytes)
        )

    get_config.__doc__ = (Operations.get_config.__doc__ or "").rstrip() + _IN_A_WORKER
    pull_image = _in_a_worker(Operations.pull_image)
    export_rootfs = _in_a_worker(Operations.export_rootfs)
    read_file = _in_a_worker(Operations.read_file)

    def _worker(self) -> Worker:
        return Worker(self, asyncio.get_running_loop())

    async def _transfer(self, work: Callable[[Worker], T], worker: Worker | None = None) -> T:
        """Run *work* in a worker thread; see `_worker.run`."""
        await self._client()  # the same loop and lifetime checks as every call
        if self._executor is None:
            # Bounded: at most this many transfers move at once; more wait their turn.
            self._executor = ThreadPoolExecutor(_WORKERS, thread_name_prefix="ecr-layers-aio")
        worker = worker or self._worker()
        self._active.add(worker)
        try:
            return await run(worker, self._executor, partial(work, worker))
        finally:
            self._active.discard(worker)

    def _pool(self) -> urllib3.PoolManager:
        """The downloads' connection pool, as the synchronous client's; made on first use."""
        if self._http is None:
            from .._host import new_pool

            self._http = new_pool()
        return self._http

    # -- images ----------------------------------------------------------------------

    async def get_image(
        self,
        repository_name: str,
        reference: str,
        *,
        registry_id: str | None = None,
        platform: str | None = None,
    ) -> Image:
        """Return the image manifest a tag or digest names, verified; see
        `LayerClient.get_image`."""
        from .._images import Request, answer, resolve
        from .._manifest import ACCEPTED_MEDIA_TYPES

        steps = resolve(
            self._validator,
            repository_name,
            reference,
            registry_id=registry_id,
            platform=platform,
        )
        self._check_open()

        deadline = deadline_of(self._retry_policy)

        async def batch_get(request: Request) -> Any:
            ecr = await self._client()
            async with _Bound(deadline, image=request.image):
                with mapped_errors(image=request.image):
                    response = await ecr.batch_get_image(
                        **request.params, acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
                    )
            return answer(response, request)

        try:
            request = next(steps)
            while True:
                served = await call_async(
                    lambda r=request: batch_get(r),  # type: ignore[misc]
                    self._retry_policy,
                    budget=self.budget,
                )
                request = steps.send(served)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class _Bound:
    """One API attempt held to *deadline* (``time.monotonic``): the task is cancelled
    there, and that cancellation becomes `EndpointTimeout`.  aiobotocore's own timeouts
    restart with every byte.  A timer handle, not ``asyncio.timeout``: this is on every
    call's path, and costs less than half as much.
    """

    __slots__ = ("_deadline", "_fired", "_handle", "_image", "_params", "_task")

    def __init__(
        self,
        deadline: float | None,
        params: dict[str, Any] | None = None,
        image: ImageRef | None = None,
    ) -> None:
        self._deadline = deadline
        self._params = params
        self._image = image
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        if self._deadline is not None:
            loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            when = loop.time() + (self._deadline - time.monotonic())
            self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        assert self._task is not None
        self._fired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if not self._fired:
            return
        assert self._task is not None
        # Ours, unless someone else cancelled the task too: then theirs wins.
        if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
            layer = context(self._params) if self._params is not None else None
            raise EndpointTimeout(
                "the API call did not finish by its deadline", layer=layer, image=self._image
            ) from None


@attrs.frozen
class _CappedSend:
    """aiobotocore's send, with the answer read here and held to `API_ANSWER_MAX`, as
    the synchronous client's are: aiobotocore would read one whole, however long."""

    send: Callable[[Any], Awaitable[Any]]

    @classmethod
    def install(cls, ecr: Any) -> None:
        http = getattr(getattr(ecr, "_endpoint", None), "http_session", None)
        if http is not None and not isinstance(http.send, cls):  # else: another transport
            http.send = cls(http.send)

    async def __call__(self, request: Any) -> Any:
        streamed = request.stream_output
        request.stream_output = True  # aiobotocore leaves the body to be read here
        try:
            response = await self.send(request)
        finally:
            request.stream_output = streamed
        if streamed:
            return response
        import aiohttp  # here: ecr_layers.aio imports without aiobotocore, to say it is needed

        raw = response.raw
        refused = stated_over_the_cap(raw.headers.get("Content-Length"))
        body, whole = bytearray(), False
        try:
            while refused is None and (chunk := await raw.content.read(1 << 16)):
                body += chunk
                refused = over_the_cap() if len(body) > API_ANSWER_MAX else None
            whole = refused is None
        except TimeoutError as exc:  # as aiobotocore's send maps them
            raise ReadTimeoutError(endpoint_url=request.url, error=exc) from exc
        except aiohttp.ClientError as exc:
            raise ConnectionClosedError(endpoint_url=request.url, error=exc) from exc
        finally:
            # Read to its end, the connection goes back to the pool; else it is closed.
            if whole:
                raw.release()
            else:
                raw.close()
        if refused is not None:
            raise refused
        response._content = bytes(body)
        return response
