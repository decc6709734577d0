"""
``pull_image``: an image's verified blobs into an OCI image layout.

The order is what keeps the layout valid at every instant: the manifest is fetched
and verified (`_images`), blobs already in the layout are checked and kept, the
missing ones are looked up in one ``get_layer_urls`` batch and downloaded
concurrently by the one download core (`_download`, staged outside ``blobs/``), and
``index.json`` names the image last (`_layout`).

A pull owns only what it made: when it fails, it removes its own staged files and
nothing else.  A blob the layout already had is never removed (`Layout.has` leaves
what it cannot use, and only a verified copy replaces it), so a failed pull leaves
every image the layout held as readable as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import attrs

from ._exceptions import ImageRef, InvalidResponse, LayerRef, UnsupportedDigest
from ._host import Crew
from ._layout import Layout
from ._manifest import Descriptor
from ._transfer import (
    AUTO_THRESHOLD,
    Progress,
    check_connections,
    check_digest,
    check_progress,
)

if TYPE_CHECKING:
    import pathlib

    from ._manifest import Image
    from ._operations import Port
    from ._validation import Validator


@attrs.frozen
class PullPlan:
    """A pull, checked: the image asked for, the layout, and how to fetch."""

    image: ImageRef
    platform: str | None
    layout: Layout
    connections: int


def prepare(
    validator: Validator,
    repository_name: object,
    reference: object,
    destination: object,
    *,
    registry_id: object,
    platform: object,
    max_parallel: object,
    progress: object,
) -> PullPlan:
    """Check every input, the platform included, then open the layout (creating it)."""
    connections = check_connections(max_parallel, "max_parallel")
    check_progress(progress)
    _, ref, by_digest = validator.image_params(repository_name, reference, registry_id)
    if by_digest:
        from ._images import check_reference_digest

        check_reference_digest(ref)
    if platform is not None:
        from ._manifest import Platform

        platform = str(Platform.parse(platform))
    return PullPlan(ref, platform, Layout.open(destination, ref), connections)


def survey(layout: Layout, image: Image, tally: Tally, crew: Crew) -> list[Descriptor]:
    """Check the image's blobs' digests, keep what the layout has (counted as done), add
    the manifest; return the blobs to fetch, largest first."""
    blobs = [image.config, *image.layers]
    for blob in blobs:
        _check_blob_digest(blob, image)
    missing: dict[str, Descriptor] = {}
    for digest, blob in {blob.digest: blob for blob in blobs}.items():  # listed twice: once
        crew.check()  # hashing what is there can take a while
        if layout.has(blob):
            tally.add(blob.size)
        else:
            missing[digest] = blob
    manifest = Descriptor(image.media_type, image.digest, len(image.manifest_bytes))
    if not layout.has(manifest):
        layout.add_blob(image.digest, image.manifest_bytes)
    # Largest first: the long downloads start early and the short ones fill in.
    return sorted(missing.values(), key=lambda b: b.size, reverse=True)


def total_of(image: Image) -> int:
    """The bytes a pull's progress counts: each distinct blob once."""
    return sum(b.size for b in {b.digest: b for b in (image.config, *image.layers)}.values())


def parallel_for(blob: Descriptor) -> int | None:
    """Small layers stream on one connection each; a large one may go ranged."""
    return 1 if blob.size < AUTO_THRESHOLD else None


def check_urls(blobs: list[Descriptor], urls: dict[str, Any]) -> None:
    """Raise the first lookup's error: nothing is fetched for an image that cannot be."""
    for blob in blobs:
        found = urls[blob.digest]
        if isinstance(found, Exception):
            raise found


def land(layout: Layout, image: Image, blob: Descriptor, path: pathlib.Path) -> None:
    """Give a downloaded, verified blob its name, if its size is the manifest's."""
    size = path.stat().st_size
    if size != blob.size:
        # The bytes are the digest's; the manifest's size is wrong, and a layout that
        # repeats it is one other tools refuse (and that every pull would fetch again).
        path.unlink()
        raise InvalidResponse(
            f"the manifest says blob {blob.digest} is {blob.size} bytes; it is {size}",
            image=image.ref,
        )
    layout.adopt(path, blob.digest)


def pull(
    client: Port,
    repository_name: object,
    reference: object,
    destination: object,
    *,
    registry_id: object,
    platform: object,
    max_parallel: object,
    progress: Progress | None,
    crew: Crew | None = None,
) -> Image:
    """Pull an image into an OCI layout; see `LayerClient.pull_image`.

    *crew*, cancelled, stops the pull: its downloads at once, its other steps between
    blobs.  The index is then left as it was.
    """
    if crew is None:
        crew = Crew()
    plan = prepare(
        client.validator,
        repository_name,
        reference,
        destination,
        registry_id=registry_id,
        platform=platform,
        max_parallel=max_parallel,
        progress=progress,
    )
    layout, ref = plan.layout, plan.image
    try:
        image = client.get_image(
            ref.repository_name, ref.reference, registry_id=ref.registry_id, platform=plan.platform
        )
        tally = Tally(total_of(image), progress)
        missing = survey(layout, image, tally, crew)
        if missing:
            _fetch(client, layout, image, missing, crew, max_parallel=plan.connections, tally=tally)
        crew.check()
        layout.record(image)
    finally:
        layout.tidy()
    return image


def _check_blob_digest(blob: Descriptor, image: Image) -> None:
    # The digest came from the service's manifest, not the caller: one that cannot be
    # verified is a bad answer (no blob lands unverified in a layout), not bad input.
    try:
        check_digest(blob.digest, LayerRef(image.repository_name, blob.digest, image.registry_id))
    except UnsupportedDigest:
        raise InvalidResponse(
            f"the manifest names blob {blob.digest[:80]!r} by a digest that cannot be verified",
            image=image.ref,
        ) from None


def _fetch(
    client: Port,
    layout: Layout,
    image: Image,
    blobs: list[Descriptor],
    crew: Crew,
    *,
    max_parallel: int,
    tally: Tally,
) -> None:
    urls = client.get_layer_urls(
        image.repository_name, [b.digest for b in blobs], registry_id=image.registry_id
    )
    check_urls(blobs, urls)
    downloads = client.downloads(crew)

    def fetch(blob: Descriptor) -> None:
        from ._download import DownloadRequest, download

        request = DownloadRequest.build(
            client.validator,
            image.repository_name,
            blob.digest,
            layout.stage(blob.digest),
            registry_id=image.registry_id,
            parallel=parallel_for(blob),
            verify=True,
            allow_http=False,
            progress=tally.for_blob(),
            url=urls[blob.digest],  # type: ignore[arg-type]  # check_urls raised errors
            max_size=blob.size,  # the manifest's size bounds what the host may send
        )
        land(layout, image, blob, download(downloads, request))

    executor = ThreadPoolExecutor(min(max_parallel, len(blobs)), "ecr-layers-pull")
    futures: list[Future[None]] = []
    try:
        futures = [executor.submit(fetch, blob) for blob in blobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        for future in futures:
            future.result()
    except BaseException:
        # One blob failed for good, or Ctrl-C: stop the others now; each discards its
        # temporary file on the way out, and the index is left as it was.
        crew.cancel()
        for future in futures:
            future.cancel()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class Tally:
    """One progress total for the whole image, summed over concurrent downloads."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self._total = total
        self._done = 0
        self._progress = progress
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count
            done = self._done
        if self._progress is not None:
            self._progress(done, self._total)

    def for_blob(self) -> Callable[[int, int | None], None] | None:
        if self._progress is None:
            return None
        seen = 0

        def report(done: int, _total: Any) -> None:
            nonlocal seen
            step, seen = done - seen, done
            self.add(step)

        return report
