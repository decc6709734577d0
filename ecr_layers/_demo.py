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

from ._default import download_layer, get_layer_url, set_default_client
from ._exceptions import ECRError, LayerInaccessible, LayersNotFound
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
    repository, digests = ecr.seed_demo()
    say(f"Stored an image in it: {repository}, {len(digests)} layers of random bytes.")
    say()
    # From here on, every request LocalECR serves is one the demo explains.
    lookups_before = ecr.stats.count("GetDownloadUrlForLayer")
    blobs_before = ecr.stats.blob_count()
    per_layer = _download_each(ecr, repository, digests, scratch, say)
    failed = _show_errors(ecr, repository, say)
    lookups = ecr.stats.count("GetDownloadUrlForLayer") - lookups_before
    blobs = ecr.stats.blob_count() - blobs_before

    say("Requests LocalECR served (counted on the server), and why:")
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
