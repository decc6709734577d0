"""
``pull_image`` for asyncio: the synchronous pull's steps (`_pull`), with the requests
awaited and the file-system work (hashing present blobs, renames, fsyncs) in threads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._pull import Tally, check_urls, land, parallel_for, prepare, survey, total_of
from ._download import whole

if TYPE_CHECKING:
    from .._layout import Layout
    from .._manifest import Descriptor, Image
    from .._transfer import Progress
    from ._client import AsyncLayerClient


async def pull(
    client: AsyncLayerClient,
    repository_name: object,
    reference: object,
    destination: object,
    *,
    registry_id: object,
    platform: object,
    max_parallel: object,
    progress: Progress | None,
) -> Image:
    """Pull an image into an OCI layout; see `AsyncLayerClient.pull_image`."""
    plan = await whole(
        asyncio.to_thread(
            prepare,
            client._validator,
            repository_name,
            reference,
            destination,
            registry_id=registry_id,
            platform=platform,
            max_parallel=max_parallel,
            progress=progress,
        ),
        # Cancelled meanwhile: the layout it opened is given up again.
        lambda opened: opened.layout.tidy(),
    )
    layout, ref = plan.layout, plan.image
    try:
        image = await client.get_image(
            ref.repository_name, ref.reference, registry_id=ref.registry_id, platform=plan.platform
        )
        tally = Tally(total_of(image), progress)
        missing = await asyncio.to_thread(survey, layout, image, tally)
        if missing:
            await _fetch(client, layout, image, missing, connections=plan.connections, tally=tally)
        # Atomic either way; a cancellation now waits for it rather than race it.
        await whole(asyncio.to_thread(layout.record, image))
    finally:
        await asyncio.shield(asyncio.to_thread(layout.tidy))
    return image


async def _fetch(
    client: AsyncLayerClient,
    layout: Layout,
    image: Image,
    blobs: list[Descriptor],
    *,
    connections: int,
    tally: Tally,
) -> None:
    urls = await client.get_layer_urls(
        image.repository_name, [b.digest for b in blobs], registry_id=image.registry_id
    )
    check_urls(blobs, urls)
    gate = asyncio.Semaphore(connections)

    async def fetch(blob: Descriptor) -> None:
        async with gate:
            staged = layout.stage(blob.digest)
            try:
                path = await client._download(
                    image.repository_name,
                    blob.digest,
                    staged,
                    registry_id=image.registry_id,
                    url=urls[blob.digest],  # type: ignore[arg-type]  # check_urls raised errors
                    max_size=blob.size,
                    parallel=parallel_for(blob),
                    progress=tally.for_blob(),
                )
                # Run to its end under a cancellation: a blob is named, or still staged.
                await whole(asyncio.to_thread(land, layout, image, blob, path))
            except BaseException:
                # A cancellation can come just after the download committed to the
                # staged name (it waits for its commit, then re-raises).
                await asyncio.shield(asyncio.to_thread(staged.unlink, missing_ok=True))
                raise

    tasks = [asyncio.ensure_future(fetch(blob)) for blob in blobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # One blob failed for good, or the pull was cancelled: stop the others; each
        # discards its temporary file on the way out, and the index is left as it was.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
