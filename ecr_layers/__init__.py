"""
ecr-layers: a typed client for Amazon ECR's ``GetDownloadUrlForLayer``.

Validated inputs, one typed exception per documented error, one retry layer.
"""

import logging
from typing import TYPE_CHECKING, Any

from . import _exceptions, _url
from ._botocore import BOTOCORE_CONFIG
from ._client import LayerClient
from ._default import (
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
    set_default_client,
)
from ._exceptions import *  # noqa: F403  (every exception, as `_exceptions.__all__` lists them)
from ._retry import (
    RetryBudget,
    RetryDetails,
    RetryPolicy,
    get_on_retry_hooks,
    is_testing,
    set_on_retry_hooks,
    set_testing,
)
from ._url import LayerUrl, RedactingFilter, redact_url

__all__ = [
    "BOTOCORE_CONFIG",
    "Descriptor",
    "Export",
    "Image",
    "LayerClient",
    "LayerUrl",
    "RedactingFilter",
    "RetryBudget",
    "RetryDetails",
    "RetryPolicy",
    "__version__",
    "default_client",
    "download_layer",
    "export_rootfs",
    "get_config",
    "get_image",
    "get_layer_url",
    "get_layer_urls",
    "get_on_retry_hooks",
    "is_testing",
    "open_layer",
    "pull_image",
    "read_file",
    "redact_url",
    "set_default_client",
    "set_on_retry_hooks",
    "set_testing",
]
# The exceptions are listed once, where they are defined.
__all__ += _exceptions.__all__


if TYPE_CHECKING:
    from ._manifest import Descriptor, Image
    from ._rootfs import Export

    __version__: str


def __getattr__(name: str) -> Any:
    # Looked up on first use: importing importlib.metadata, or the image classes,
    # costs cold start time that a process which never uses them should not pay.
    if name in ("Descriptor", "Image"):
        from . import _manifest

        return getattr(_manifest, name)
    if name == "Export":
        from . import _rootfs

        return _rootfs.Export
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ecr-layers")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A library's logger stays silent until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
# And its records, and its transports' (urllib3's warnings quote the URL they fetched),
# carry no URL's secret, whatever handler the application gives them.
_url.redact_logs()
