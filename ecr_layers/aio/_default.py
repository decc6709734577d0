"""
The default `AsyncLayerClient`: one per event loop, made on first use, closed with it.

A client's connections belong to the loop that opened them, so a process running
several loops (or one after another, as tests do) gets one client per loop.  Each is
closed when its loop shuts down its async generators (``asyncio.run`` does), or by
`close_default_client`: no "Unclosed client session" at exit.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._client import _MAX_ENTRIES, _MAX_FILE, _MAX_UNPACKED, MAX_CONFIG_BYTES
from ._client import AsyncLayerClient

if TYPE_CHECKING:
    from .._exceptions import ECRError
    from .._manifest import Descriptor, Image
    from .._rootfs import Export
    from .._url import LayerUrl
    from ._stream import AsyncLayerStream

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


async def get_layer_url(
    repository_name: str, layer_digest: str, *, registry_id: str | None = None
) -> LayerUrl:
    """`AsyncLayerClient.get_layer_url` on this loop's default client."""
    client = await default_client()
    return await client.get_layer_url(repository_name, layer_digest, registry_id=registry_id)


async def get_layer_urls(
    repository_name: str,
    layer_digests: Iterable[str],
    *,
    registry_id: str | None = None,
    max_workers: int = 16,
) -> dict[str, LayerUrl | ECRError]:
    """`AsyncLayerClient.get_layer_urls` on this loop's default client."""
    client = await default_client()
    return await client.get_layer_urls(
        repository_name, layer_digests, registry_id=registry_id, max_workers=max_workers
    )


async def get_image(
    repository_name: str,
    reference: str,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
) -> Image:
    """`AsyncLayerClient.get_image` on this loop's default client."""
    client = await default_client()
    return await client.get_image(
        repository_name, reference, registry_id=registry_id, platform=platform
    )


async def download_layer(
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
    """`AsyncLayerClient.download_layer` on this loop's default client."""
    client = await default_client()
    return await client.download_layer(
        repository_name,
        layer_digest,
        destination,
        registry_id=registry_id,
        progress=progress,
        parallel=parallel,
        verify=verify,
        allow_http=allow_http,
    )


async def get_config(
    image: Image | str,
    reference: str | None = None,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_bytes: int = MAX_CONFIG_BYTES,
) -> dict[str, Any]:
    """`AsyncLayerClient.get_config` on this loop's default client."""
    client = await default_client()
    return await client.get_config(
        image, reference, registry_id=registry_id, platform=platform, max_bytes=max_bytes
    )


async def open_layer(
    repository_name: str, layer_digest: str | Descriptor, *, registry_id: str | None = None
) -> AsyncLayerStream:
    """`AsyncLayerClient.open_layer` on this loop's default client."""
    client = await default_client()
    return await client.open_layer(repository_name, layer_digest, registry_id=registry_id)


async def pull_image(
    repository_name: str,
    reference: str,
    destination: str | os.PathLike[str],
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_parallel: int = 4,
    progress: Callable[[int, int | None], None] | None = None,
) -> Image:
    """`AsyncLayerClient.pull_image` on this loop's default client."""
    client = await default_client()
    return await client.pull_image(
        repository_name,
        reference,
        destination,
        registry_id=registry_id,
        platform=platform,
        max_parallel=max_parallel,
        progress=progress,
    )


async def export_rootfs(
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
    """`AsyncLayerClient.export_rootfs` on this loop's default client."""
    client = await default_client()
    return await client.export_rootfs(
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


async def read_file(
    repository_name: str,
    reference: str,
    path: str,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_size: int = _MAX_FILE,
) -> bytes:
    """`AsyncLayerClient.read_file` on this loop's default client."""
    client = await default_client()
    return await client.read_file(
        repository_name,
        reference,
        path,
        registry_id=registry_id,
        platform=platform,
        max_size=max_size,
    )
