"""
``ecr-layers demo``: the whole job, end to end, on an embedded LocalECR.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import time

from ._client import download_layer, get_layer_url, set_default_client
from ._exceptions import LayerInaccessible, LayersNotFound
from .testing import LocalECR, push_image_via_api

_LAYER_SIZES = (64 * 1024, 1024 * 1024, 8 * 1024 * 1024)


def run(*, quiet: bool = False) -> int:
    """Push an image, get and download every layer, show the typed errors; return 0."""

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    with LocalECR() as ecr, tempfile.TemporaryDirectory() as scratch:
        say(f"LocalECR listening on {ecr.endpoint_url} (region {ecr.region_name})")
        layers = [os.urandom(size) for size in _LAYER_SIZES]
        digests = push_image_via_api(ecr.botocore_client(), "demo/app", layers, tag="v1")
        say(f"pushed demo/app:v1 with {len(digests)} layers through the ECR upload API")

        previous = set_default_client(ecr.client())
        try:
            for digest, data in zip(digests, layers, strict=True):
                url = get_layer_url("demo/app", digest)
                started = time.perf_counter()
                path = download_layer("demo/app", digest, scratch)
                elapsed = time.perf_counter() - started
                ok = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest() == digest[7:]
                if not ok or path.stat().st_size != len(data):
                    say(f"FAILED: {digest[:19]} did not verify")
                    return 1
                say(
                    f"  {digest[:19]}…  {len(data):>9,} bytes  sha256 verified  "
                    f"{elapsed * 1000:6.1f} ms  URL expires {url.expires_at:%H:%M:%S} UTC"
                )

            try:
                get_layer_url("demo/app", "sha256:" + "0" * 64)
            except LayersNotFound as exc:
                say(f"caught LayersNotFound    ({exc.code}, request id {exc.request_id})")
            orphan = ecr.add_layer("demo/app", b"uploaded, but no image references it")
            try:
                get_layer_url("demo/app", orphan)
            except LayerInaccessible as exc:
                say(f"caught LayerInaccessible ({exc.code}, request id {exc.request_id})")
        finally:
            set_default_client(previous)
        calls = ecr.stats.count("GetDownloadUrlForLayer")
        say(f"done: {calls} GetDownloadUrlForLayer calls, {ecr.stats.blob_count()} blob requests")
    return 0
