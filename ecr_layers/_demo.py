"""
``ecr-layers demo``: the whole job, end to end, on an embedded LocalECR, explained.

Every figure it prints is measured: request counts are LocalECR's own, counted on
the server, and their explanation is computed from the calls the demo made.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import tempfile
import time
from collections.abc import Callable

from ._default import download_layer, get_image, get_layer_url, pull_image, set_default_client
from ._exceptions import ECRError, LayerInaccessible, LayersNotFound, PlatformNotFound
from ._manifest import Image
from .testing import LocalECR

_UNKNOWN_DIGEST = "sha256:" + "0" * 64
_ROW = "  {:<22} {:>11}  {:<9} {:>9}  {:>13}  {}"

Say = Callable[..., None]


class _Failed(Exception):
    """The demo saw something it must not: said, and the demo exits 1."""


def run(*, quiet: bool = False, ecr: LocalECR | None = None) -> int:
    """Store the demo image, get and download every layer, show two typed errors; return 0.

    On *ecr* if given (a started LocalECR), else on a fresh one in this process.
    """

    def say(text: str = "") -> None:
        if not quiet:
            print(text.rstrip(), flush=True)

    with contextlib.ExitStack() as stack:
        if ecr is None:
            ecr = stack.enter_context(LocalECR())
        scratch = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
        client = stack.enter_context(ecr.client())
        stack.callback(set_default_client, set_default_client(client))
        try:
            _run(ecr, scratch, say)
        except _Failed as exc:
            say(f"FAILED: {exc}")
            return 1
    return 0


def _run(ecr: LocalECR, scratch: pathlib.Path, say: Say) -> None:
    say(f"LocalECR, an ECR endpoint in this process: {ecr.endpoint_url} (region {ecr.region_name})")
    seeded = ecr.seed_demo_image()
    repository, tag = seeded.repository_name, seeded.tag or "latest"
    say(
        f"Stored a multi-platform image in it: {repository}:{tag}, an OCI index of "
        f"{len(seeded.manifests)} platforms ({', '.join(seeded.manifests)}) and an attestation."
    )
    say()
    image = _show_image(ecr, repository, tag, say)
    digests = [layer.digest for layer in image.layers]
    # From here on, every request LocalECR serves is one the demo explains.
    lookups_before = ecr.stats.count("GetDownloadUrlForLayer")
    blobs_before = ecr.stats.blob_count()
    per_layer = _download_each(ecr, repository, digests, scratch, say)
    failed = _show_errors(ecr, repository, say)
    lookups = ecr.stats.count("GetDownloadUrlForLayer") - lookups_before
    blobs = ecr.stats.blob_count() - blobs_before

    say("Requests LocalECR served for the layers above (counted on the server), and why:")
    # One get_layer_url per layer for the table, one inside each download_layer.
    layers = len(per_layer)
    asked = layers + layers + failed
    head = f"  {lookups} GetDownloadUrlForLayer "
    pad = " " * len(head)
    say(f"{head}{'=' if lookups == asked else '≠'} {layers} by get_layer_url (one per layer)")
    say(f"{pad}+ {layers} inside download_layer (each gets a fresh URL of its own)")
    say(f"{pad}+ {failed} for the errors above")
    if lookups != asked:
        say(f"{pad}({lookups - asked} more than the demo asked for: retries)")
    counted = sum(per_layer)
    head = f"  {blobs} blob downloads "
    pad = " " * len(head)
    sums = " + ".join(map(str, per_layer))
    say(f"{head}{'=' if blobs == counted else '≠'} {sums}, the BLOB REQUESTS above: one per layer")
    say(f"{pad}that fits in the first ranged request; a larger layer takes that one")
    say(f"{pad}and then more for the rest")
    say()
    _pull_twice(ecr, image, scratch / "layout", say)


def _show_image(ecr: LocalECR, repository: str, tag: str, say: Say) -> Image:
    """get_image on the multi-platform tag: the platform it chose and what it offers."""
    before = ecr.stats.count("BatchGetImage")
    try:
        image = get_image(repository, tag)
        how = "this machine's platform"
    except PlatformNotFound as exc:  # a machine none of the demo's platforms fits
        image = get_image(repository, tag, platform=exc.platforms[0])
        how = f"the first one offered (this machine's is not: {exc.message})"
    calls = ecr.stats.count("BatchGetImage") - before
    say(f"get_image({repository!r}, {tag!r}) resolved the index to {how}:")
    say(f"  index     {image.index_digest}  offers {', '.join(image.platforms)}")
    say(f"  platform  {image.platform}")
    say(f"  manifest  {image.digest}  ({len(image.manifest_bytes)} bytes, verified)")
    say(f"  config    {image.config.digest}  ({image.config.size:,} bytes)")
    for number, layer in enumerate(image.layers, 1):
        say(f"  layer {number}   {layer.digest}  ({layer.size:,} bytes)")
    say(f"  {calls} BatchGetImage calls: the tag names an index, then its entry for the platform.")
    say()
    return image


def _pull_twice(ecr: LocalECR, image: Image, layout: pathlib.Path, say: Say) -> None:
    """pull_image into an OCI layout, then again: the second fetches no blob."""
    say("pull_image() into an OCI image layout (in the temporary directory), twice:")
    blobs_in_image = 1 + len(image.layers)  # the config and the layers
    expected = {"first": (2, blobs_in_image, blobs_in_image), "second": (2, 0, 0)}
    for attempt, wanted in expected.items():
        ops = ("BatchGetImage", "GetDownloadUrlForLayer")
        before = [ecr.stats.count(op) for op in ops]
        blobs_before = ecr.stats.blob_count()
        pulled = pull_image(image.repository_name, image.reference, layout, platform=image.platform)
        calls, lookups = (ecr.stats.count(op) - b for op, b in zip(ops, before, strict=True))
        seen = (calls, lookups, ecr.stats.blob_count() - blobs_before)
        if pulled.digest != image.digest:
            raise _Failed("pull_image pulled another manifest than get_image chose")
        mark = "=" if seen == wanted else "≠ expected"
        say(
            f"  {attempt:<6}  {seen[0]} BatchGetImage, {seen[1]} GetDownloadUrlForLayer, "
            f"{seen[2]} blob downloads  {mark} {wanted}"
        )
    say("  Both pulls resolve the tag (index, then manifest). The first looks up and fetches")
    say(f"  the config and {len(image.layers)} layers in one batch; the second finds every blob")
    say("  present and verified, and fetches none.")
    on_disk = sorted(p.name[:12] for p in (layout / "blobs" / "sha256").iterdir())
    say(f"  blobs/sha256/ holds {len(on_disk)} files (manifest, config, layers), each named by")
    say("  its own hash; index.json names the image by its tag, for skopeo's oci:DIR:TAG.")
    say()


def _download_each(
    ecr: LocalECR, repository: str, digests: list[str], scratch: pathlib.Path, say: Say
) -> list[int]:
    """Look up and download every layer, one table row each; return blob requests per layer."""
    say("Each layer: get_layer_url(), then download_layer() into a temporary directory.")
    say(_ROW.format("LAYER", "BYTES", "SHA-256", "TIME", "BLOB REQUESTS", "URL EXPIRES (UTC)"))
    per_layer = []
    for digest in digests:
        url = get_layer_url(repository, digest)
        before = ecr.stats.blob_count(digest)
        started = time.perf_counter()
        path = download_layer(repository, digest, scratch)
        elapsed = time.perf_counter() - started
        per_layer.append(ecr.stats.blob_count(digest) - before)
        data = path.read_bytes()
        # Checked again here, independently of download_layer's own check.
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise _Failed(f"{digest} did not verify")
        expires = f"{url.expires_at:%H:%M:%S}" if url.expires_at else "(not stated)"
        row = (f"{len(data):,}", "verified", f"{elapsed * 1000:.1f} ms", per_layer[-1], expires)
        say(_ROW.format(digest[:21] + "…", *row))
    say()
    return per_layer


def _show_errors(ecr: LocalECR, repository: str, say: Say) -> int:
    """Make the lookups that must fail, saying what input caused each error; return how many."""
    say("Two lookups that must fail, and the typed error each one raises:")
    orphan = ecr.add_layer(repository, b"uploaded, but no image references it")
    demonstrations: list[tuple[str, str, type[ECRError]]] = [
        ("an unknown digest, sha256:000…0 (all zeros)", _UNKNOWN_DIGEST, LayersNotFound),
        (f"{orphan[:21]}…, a layer uploaded but no image references it", orphan, LayerInaccessible),
    ]
    for what, digest, expected in demonstrations:
        try:
            get_layer_url(repository, digest)
        except expected as exc:
            say(f"  input: {what}")
            say(f"    caught {type(exc).__name__} ({exc.code}, request id {exc.request_id})")
        else:
            raise _Failed(f"{what} got a URL")
    say()
    return len(demonstrations)
