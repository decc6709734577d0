"""
The process-wide default client, and the module-level functions that use it.
"""

from __future__ import annotations

import io
import os
import pathlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._client import _MAX_ENTRIES, _MAX_FILE, _MAX_UNPACKED, MAX_CONFIG_BYTES, LayerClient
from ._exceptions import ECRError
from ._url import LayerUrl

if TYPE_CHECKING:
    from ._manifest import Descriptor, Image
    from ._rootfs import Export

_default: LayerClient | None = None
_default_lock = threading.Lock()


def default_client() -> LayerClient:
    """Return the process-wide client, creating it on first use (thread-safe)."""
    global _default  # noqa: PLW0603
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = LayerClient()
            client = _default
    return client


def set_default_client(client: LayerClient | None) -> LayerClient | None:
    """Replace the process-wide client; None makes the next call build a fresh one.

    Returns the previous one, so that a test can put it back.
    """
    global _default
    with _default_lock:
        previous, _default = _default, client
    return previous


def get_layer_url(
    repository_name: str, layer_digest: str, *, registry_id: str | None = None
) -> LayerUrl:
    """Return a layer's pre-signed download URL, using the process-wide default client.

    See `LayerClient.get_layer_url`.
    """
    return default_client().get_layer_url(repository_name, layer_digest, registry_id=registry_id)


def get_layer_urls(
    repository_name: str,
    layer_digests: Iterable[str],
    *,
    registry_id: str | None = None,
    max_workers: int = 16,
) -> dict[str, LayerUrl | ECRError]:
    """Look up many layers' URLs at once with the default client.

    See `LayerClient.get_layer_urls`.
    """
    return default_client().get_layer_urls(
        repository_name, layer_digests, registry_id=registry_id, max_workers=max_workers
    )


def download_layer(
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
    """Download and verify a layer with the default client; see `LayerClient.download_layer`."""
    return default_client().download_layer(
        repository_name,
        layer_digest,
        destination,
        registry_id=registry_id,
        progress=progress,
        parallel=parallel,
        verify=verify,
        allow_http=allow_http,
    )


def get_image(
    repository_name: str,
    reference: str,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
) -> Image:
    """Return a verified image manifest with the default client; see `LayerClient.get_image`."""
    return default_client().get_image(
        repository_name, reference, registry_id=registry_id, platform=platform
    )


def get_config(
    image: Image | str,
    reference: str | None = None,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_bytes: int = MAX_CONFIG_BYTES,
) -> dict[str, Any]:
    """Return an image's verified config with the default client; see `LayerClient.get_config`."""
    return default_client().get_config(
        image, reference, registry_id=registry_id, platform=platform, max_bytes=max_bytes
    )


def open_layer(
    repository_name: str, layer_digest: str | Descriptor, *, registry_id: str | None = None
) -> io.BufferedReader:
    """Open a layer for verified streaming reads with the default client.

    See `LayerClient.open_layer`.
    """
    return default_client().open_layer(repository_name, layer_digest, registry_id=registry_id)


def pull_image(
    repository_name: str,
    reference: str,
    destination: str | os.PathLike[str],
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_parallel: int = 4,
    progress: Callable[[int, int | None], None] | None = None,
) -> Image:
    """Pull an image into an OCI layout with the default client; see `LayerClient.pull_image`."""
    return default_client().pull_image(
        repository_name,
        reference,
        destination,
        registry_id=registry_id,
        platform=platform,
        max_parallel=max_parallel,
        progress=progress,
    )


def export_rootfs(
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
    """Unpack an image as a root filesystem with the default client; see
    `LayerClient.export_rootfs`."""
    return default_client().export_rootfs(
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


def read_file(
    repository_name: str,
    reference: str,
    path: str,
    *,
    registry_id: str | None = None,
    platform: str | None = None,
    max_size: int = _MAX_FILE,
) -> bytes:
    """Return one file of an image with the default client; see `LayerClient.read_file`."""
    return default_client().read_file(
        repository_name,
        reference,
        path,
        registry_id=registry_id,
        platform=platform,
        max_size=max_size,
    )
