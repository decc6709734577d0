"""
The asyncio client's transfers: the synchronous engine, in the client's worker threads.

Bytes move as in `LayerClient` (urllib3, ranges, the sink, landing), on threads;
API calls stay on the event loop.  A `Worker` is what one transfer's thread holds of
the client: its URL renewals and image calls go back to the loop through the client's
own methods, so there is one aiobotocore client, one credential chain, one retry
budget, and renewals stay single-flight (`_host.Job`'s lock).  `run` awaits a
transfer; cancelling the awaiting task stops it (its connections are shut, its
pending loop calls cancelled) and waits for its thread to clean up and end, so the
task ends with nothing left behind and nothing still writing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import ConfigurationError
from .._host import Crew, Downloads

if TYPE_CHECKING:
    from .._exceptions import ECRError, LayerRef
    from .._manifest import Image
    from .._url import LayerUrl
    from .._validation import Validator
    from ._client import AsyncLayerClient

T = TypeVar("T")


class Worker:
    """One transfer's way back to its client and event loop: its `_operations.Port`."""

    def __init__(self, client: AsyncLayerClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        #: Stops the transfer's downloads; the pull's too.
        self.crew = Crew()
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        #: Stopped by the client's closing, not by a cancellation.
        self.closed = False

    def stop(self) -> None:
        """Stop the transfer now: its downloads, and the loop calls it waits on."""
        with self._lock:
            self._stopped = True
            calls = list(self._calls)
        self.crew.cancel()
        for call in calls:
            call.cancel()

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine of the client's on its loop, from this worker thread."""
        with self._lock:
            if self._stopped:
                raise KeyboardInterrupt  # as the engine stops on Ctrl-C
            coroutine = make()
            try:
                call = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            except RuntimeError:  # the loop is closed
                coroutine.close()
                raise ConfigurationError("the event loop of this transfer is closed") from None
            self._calls.add(call)
        try:
            return call.result()
        except concurrent.futures.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            with self._lock:
                self._calls.discard(call)

    # The client as a transfer's thread sees it (`_host.URLSource`, `_operations.Port`).

    @property
    def validator(self) -> Validator:
        return self._client._validator

    def lookup_once(self, layer: LayerRef) -> LayerUrl:
        return self._call(lambda: self._client.lookup_once(layer))

    def get_image(
        self, repository_name: str, reference: str, *, registry_id: str | None, platform: str | None
    ) -> Image:
        return self._call(
            lambda: self._client.get_image(
                repository_name, reference, registry_id=registry_id, platform=platform
            )
        )

    def get_layer_urls(
        self, repository_name: str, layer_digests: Iterable[str], *, registry_id: str | None
    ) -> dict[str, LayerUrl | ECRError]:
        return self._call(
            lambda: self._client.get_layer_urls(
                repository_name, layer_digests, registry_id=registry_id
            )
        )

    def downloads(self, crew: Crew | None = None) -> Downloads:
        client = self._client
        return Downloads(
            self, client._pool(), client.download_retry_policy, client.budget, crew or self.crew
        )


async def run(worker: Worker, executor: concurrent.futures.Executor, work: Callable[[], T]) -> T:
    """Run *work* in *executor* for *worker*'s transfer; stop it if the task is cancelled.

    A cancellation stops the transfer and waits for its thread to end before it is
    re-raised: the thread discards its temporary file and closes its connections.  A
    transfer still waiting for a free thread is taken out of the queue instead.
    """
    submitted = executor.submit(work)
    future = asyncio.wrap_future(submitted)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if submitted.cancel():  # still queued behind other transfers: it never starts
            raise
        worker.stop()
        await _ended(future)
        raise
    except KeyboardInterrupt:
        if worker.closed:  # stopped by the client's close(), not by Ctrl-C
            raise ConfigurationError("this AsyncLayerClient is closed") from None
        raise


async def _ended(future: asyncio.Future[Any]) -> None:
    """Wait for *future* to end whatever cancellations come meanwhile; drop its outcome."""
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            continue
    if not future.cancelled():
        future.exception()  # the stop's KeyboardInterrupt, as expected: retrieved
