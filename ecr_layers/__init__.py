"""
ecr-layers: a typed client for Amazon ECR's ``GetDownloadUrlForLayer``.

Validated inputs, one typed exception per documented error, one retry layer.
"""

import logging

from ._client import (
    BOTOCORE_CONFIG,
    LayerClient,
    default_client,
    download_layer,
    get_layer_url,
    get_layer_urls,
    set_default_client,
)
from ._exceptions import (
    AccessDenied,
    ConfigurationError,
    CredentialsError,
    DigestMismatch,
    DownloadError,
    DownloadUrlExpired,
    ECRError,
    EndpointTimeout,
    EndpointUnreachable,
    InvalidParameter,
    InvalidResponse,
    LayerInaccessible,
    LayersNotFound,
    RepositoryNotFound,
    ServerError,
    Throttled,
    TransientError,
    UnableToGetUpstreamLayer,
    UnknownError,
    UnsupportedDigest,
)
from ._retry import RetryPolicy, is_testing, set_testing
from ._url import LayerUrl, redact_url

__all__ = [
    "BOTOCORE_CONFIG",
    "AccessDenied",
    "ConfigurationError",
    "CredentialsError",
    "DigestMismatch",
    "DownloadError",
    "DownloadUrlExpired",
    "ECRError",
    "EndpointTimeout",
    "EndpointUnreachable",
    "InvalidParameter",
    "InvalidResponse",
    "LayerClient",
    "LayerInaccessible",
    "LayerUrl",
    "LayersNotFound",
    "RepositoryNotFound",
    "RetryPolicy",
    "ServerError",
    "Throttled",
    "TransientError",
    "UnableToGetUpstreamLayer",
    "UnknownError",
    "UnsupportedDigest",
    "default_client",
    "download_layer",
    "get_layer_url",
    "get_layer_urls",
    "is_testing",
    "redact_url",
    "set_default_client",
    "set_testing",
]

# A library's logger stays silent until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
