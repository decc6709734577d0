"""
The default `AsyncLayerClient`: one per event loop, made on first use, closed with it.

A client's connections belong to the loop that opened them, so a process running
several loops (or one after another, as tests do) gets one client per loop.  Each is
closed when its loop shuts down its async generators (``asyncio.run`` does), or by
`close_default_client`: no "Unclosed client session" at exit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from types import CoroutineType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from .._exceptions import ECRError
from .._operations import arguments_checker, method_from
from ._client import AsyncLayerClient

P = ParamSpec("P")
T = TypeVar("T")

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLayerClient] = (
    weakref.WeakKeyDictionary()
)
# The keepers' generators, kept alive as long as their loop: the loop holds only weak
# references to the async generators it will finalize.
_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIterator[None]] = (
    weakref.WeakKeyDictionary()
)


async def default_client() -> AsyncLayerClient:
    """Return this event loop's default client, creating it on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client._closed:
        client = AsyncLayerClient()
        _clients[loop] = client
        keeper = _keeper(client)
        await keeper.__anext__()  # parked at its yield until the loop shuts down
        _keepers[loop] = keeper
    return client


async def _keeper(client: AsyncLayerClient) -> AsyncIterator[None]:
    # The loop finalizes async generators as it shuts down (asyncio.run calls
    # shutdown_asyncgens), which runs this finally clause in the loop, in time.  A loop
    # closed without that (run_until_complete, then close) leaves its default client
    # unclosed: close_default_client() is for those.
    try:
        yield
    finally:
        await client.close()


async def close_default_client() -> None:
    """Close this event loop's default client now (the next call makes a new one)."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    keeper = _keepers.pop(loop, None)
    if client is not None:
        await client.close()
    if keeper is not None:
        await keeper.aclose()  # type: ignore[attr-defined]


def _on_default(
    method: Callable[Concatenate[AsyncLayerClient, P], Awaitable[T]],
) -> Callable[P, CoroutineType[Any, Any, T]]:
    """*method*, as a module-level coroutine function on this loop's default client."""
    check = arguments_checker(method)
    name = method.__name__

    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            bound: Callable[P, Awaitable[T]] = getattr(await default_client(), name)
            return await bound(*args, **kwargs)
        except (ECRError, TypeError):
            check(args, kwargs)  # as in the synchronous `_default._on_default`
            raise

    doc = f"`AsyncLayerClient.{method.__name__}` on this loop's default client."
    # Typed as an ``async def`` is: see `_client._in_a_worker`.
    return method_from(cast("Callable[P, CoroutineType[Any, Any, T]]", call), method, "", doc)


get_layer_url = _on_default(AsyncLayerClient.get_layer_url)
get_layer_urls = _on_default(AsyncLayerClient.get_layer_urls)
get_image = _on_default(AsyncLayerClient.get_image)
download_layer = _on_default(AsyncLayerClient.download_layer)
get_config = _on_default(AsyncLayerClient.get_config)
open_layer = _on_default(AsyncLayerClient.open_layer)
pull_image = _on_default(AsyncLayerClient.pull_image)
export_rootfs = _on_default(AsyncLayerClient.export_rootfs)
read_file = _on_default(AsyncLayerClient.read_file)
