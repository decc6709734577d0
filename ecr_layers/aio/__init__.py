"""
ecr-layers for asyncio: `AsyncLayerClient`, and module-level functions on a default
client per event loop.  Needs the ``async`` extra: ``pip install "ecr-layers[async]"``.

The contract is `ecr_layers`': the same validation, error classes, retry policy and
retry budget, written once and shared; only the transport (aiobotocore) differs.
"""

from ._client import AsyncLayerClient
from ._default import (
    close_default_client,
    default_client,
    download_layer,
    export_rootfs,
    get_config,
    get_image,
    get_layer_url,
    get_layer_urls,
    open_layer,
    pull_image,
    read_file,
)
from ._stream import AsyncLayerStream

__all__ = [
    "AsyncLayerClient",
    "AsyncLayerStream",
    "close_default_client",
    "default_client",
    "download_layer",
    "export_rootfs",
    "get_config",
    "get_image",
    "get_layer_url",
    "get_layer_urls",
    "open_layer",
    "pull_image",
    "read_file",
]
