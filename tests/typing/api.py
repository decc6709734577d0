"""Type-checked by mypy --strict in CI, never run: the public API's types, pinned."""

from __future__ import annotations

import datetime as dt
import io
import pathlib
from collections.abc import Callable
from typing import Any, assert_type

import ecr_layers
from ecr_layers import LayerClient, LayerUrl, RetryPolicy

url = ecr_layers.get_layer_url("team/app", "sha256:ab", registry_id="123456789012")
assert_type(url, LayerUrl)
assert_type(url.download_url, str)
assert_type(url.layer_digest, str)
assert_type(url.expires_at, dt.datetime | None)

client = LayerClient(region_name="us-east-1", retry_policy=RetryPolicy(attempts=3, timeout=None))
assert_type(client.get_layer_url("team/app", "sha256:ab"), LayerUrl)
assert_type(client.retry_policy.attempts, int)

try:
    ecr_layers.get_layer_url("team/app", "sha256:ab")
except ecr_layers.InvalidParameter as exc:
    assert_type(exc.parameter, str | None)
    assert_type(exc.http_status, int | None)
except ecr_layers.ECRError as exc:
    assert_type(exc.code, str)
    assert_type(exc.request_id, str | None)
    assert_type(exc.attempts, int)


results = ecr_layers.get_layer_urls("team/app", ["sha256:ab"], max_workers=4)
assert_type(results, dict[str, LayerUrl | ecr_layers.ECRError])
path = client.download_layer(
    "team/app", "sha256:ab", "/tmp", parallel=4, progress=lambda d, t: None
)
assert_type(path, pathlib.Path)
assert_type(ecr_layers.download_layer("team/app", "sha256:ab", pathlib.Path(".")), pathlib.Path)
try:
    client.download_layer("team/app", "sha256:ab", ".")
except ecr_layers.DigestMismatch as mismatch:
    assert_type(mismatch.expected, str | None)
    assert_type(mismatch.repository_name, str)
    assert_type(mismatch.layer_digest, str)
except ecr_layers.LayersNotFound as missing:
    assert_type(missing.repository_name, str)
    assert_type(missing.layer_digest, str)
    assert_type(missing.registry_id, str | None)
except ecr_layers.LayerInaccessible as inaccessible:
    assert_type(inaccessible.layer_digest, str)
    assert_type(inaccessible.layer, ecr_layers.LayerRef)
except ecr_layers.DestinationError as destination:
    assert_type(destination.errno, int | None)
    assert_type(destination.layer_digest, str)
except ecr_layers.ECRError as other:
    assert_type(other.repository_name, str | None)
    assert_type(other.retryable, bool)
    assert_type(other.retry_after, float | None)

with LayerClient(region_name="us-east-1") as scoped:
    assert_type(scoped, LayerClient)
    assert_type(scoped.download_retry_policy, RetryPolicy)
    assert_type(scoped.budget, ecr_layers.RetryBudget)
scoped.close()
with ecr_layers.set_testing(True):
    assert_type(ecr_layers.is_testing(), bool)
ecr_layers.set_testing(False)  # a plain call, too


def _on_retry(details: ecr_layers.RetryDetails) -> None:
    assert_type(details.attempt, int)
    assert_type(details.error, ecr_layers.TransientError)
    assert_type(details.wait, float)


with ecr_layers.set_on_retry_hooks([*ecr_layers.get_on_retry_hooks(), _on_retry]):
    assert_type(
        ecr_layers.get_on_retry_hooks(), tuple[Callable[[ecr_layers.RetryDetails], None], ...]
    )
ecr_layers.set_on_retry_hooks(None)

# Images.
image = client.get_image("team/app", "v1", platform="linux/arm64")
assert_type(image, ecr_layers.Image)
assert_type(ecr_layers.get_image("team/app", "sha256:ab"), ecr_layers.Image)
assert_type(image.layers, tuple[ecr_layers.Descriptor, ...])
assert_type(image.config.size, int)
assert_type(image.platform, str | None)
assert_type(image.platforms, tuple[str, ...])
assert_type(image.manifest_bytes, bytes)
assert_type(image.total_size, int)
assert_type(client.get_config(image), dict[str, Any])
assert_type(ecr_layers.get_config("team/app", "v1", max_bytes=1024), dict[str, Any])
with client.open_layer("team/app", "sha256:ab") as stream:
    assert_type(stream.read(10), bytes)
assert_type(ecr_layers.open_layer("team/app", "sha256:ab"), io.BufferedReader)
pulled = client.pull_image("team/app", "v1", pathlib.Path("/tmp/layout"), max_parallel=2)
assert_type(pulled, ecr_layers.Image)
assert_type(ecr_layers.pull_image("team/app", "v1", "/tmp/layout"), ecr_layers.Image)
exported = client.export_rootfs("team/app", "v1", pathlib.Path("/tmp/root"), max_size=1 << 30)
assert_type(exported, ecr_layers.Export)
assert_type(exported.image, ecr_layers.Image)
assert_type(exported.path, str)
assert_type(exported.skipped, tuple[str, ...])
assert_type(ecr_layers.export_rootfs("team/app", "v1", "/tmp/root"), ecr_layers.Export)
assert_type(client.read_file("team/app", "v1", "/etc/os-release"), bytes)
assert_type(ecr_layers.read_file("team/app", "v1", "/etc/os-release", max_size=1024), bytes)
try:
    client.read_file("team/app", "v1", "/etc/os-release")
except ecr_layers.FileNotInImage as not_there:
    assert_type(not_there.path, str)
except ecr_layers.UnsafeLayer as unsafe:
    assert_type(unsafe.entry, str)
try:
    client.get_image("team/app", "v1")
except ecr_layers.PlatformNotFound as no_platform:
    assert_type(no_platform.platforms, tuple[str, ...])
    assert_type(no_platform.reference, str)
except ecr_layers.ImageNotFound as no_image:
    assert_type(no_image.repository_name, str)
    assert_type(no_image.reference, str)
    assert_type(no_image.image, ecr_layers.ImageRef)
except ecr_layers.BlobTooLarge as too_large:
    assert_type(too_large.limit, int)
    assert_type(too_large.layer_digest, str)
except ecr_layers.ECRError as any_error:
    assert_type(any_error.reference, str | None)
    assert_type(any_error.image, ecr_layers.ImageRef | None)


# asyncio.
async def _async_api() -> None:
    from ecr_layers import aio

    async with aio.AsyncLayerClient(region_name="us-east-1") as async_client:
        assert_type(
            await async_client.export_rootfs("team/app", "v1", "/tmp/root"), ecr_layers.Export
        )
        assert_type(await async_client.read_file("team/app", "v1", "/etc/passwd"), bytes)
        assert_type(async_client, aio.AsyncLayerClient)
        assert_type(await async_client.get_layer_url("team/app", "sha256:ab"), LayerUrl)
        assert_type(
            await async_client.get_layer_urls("team/app", ["sha256:ab"]),
            dict[str, LayerUrl | ecr_layers.ECRError],
        )
        assert_type(await async_client.get_image("team/app", "v1"), ecr_layers.Image)
        assert_type(async_client.retry_policy, RetryPolicy)
    assert_type(await aio.get_layer_url("team/app", "sha256:ab"), LayerUrl)
    assert_type(await aio.get_image("team/app", "v1", platform="linux/amd64"), ecr_layers.Image)
    assert_type(await aio.default_client(), aio.AsyncLayerClient)
    assert_type(
        await aio.download_layer("team/app", "sha256:ab", pathlib.Path("/tmp")), pathlib.Path
    )
    assert_type(await aio.get_config("team/app", "v1"), dict[str, Any])
    stream = await aio.open_layer("team/app", "sha256:ab")
    assert_type(stream, aio.AsyncLayerStream)
    assert_type(await stream.read(10), bytes)
    assert_type(await aio.pull_image("team/app", "v1", "/tmp/layout"), ecr_layers.Image)
    assert_type(await aio.export_rootfs("team/app", "v1", "/tmp/root"), ecr_layers.Export)
    assert_type(await aio.read_file("team/app", "v1", "/etc/passwd"), bytes)
    await aio.close_default_client()
