from __future__ import annotations

import ecr_layers
import ecr_layers.testing


def test_all_is_pinned() -> None:
    assert sorted(ecr_layers.__all__) == sorted(
        [
            "BOTOCORE_CONFIG",
            "AccessDenied",
            "BlobTooLarge",
            "ConfigurationError",
            "CredentialsError",
            "Descriptor",
            "DestinationError",
            "DigestMismatch",
            "DownloadError",
            "DownloadUrlExpired",
            "ECRError",
            "EndpointTimeout",
            "EndpointUnreachable",
            "Image",
            "ImageError",
            "ImageInaccessible",
            "ImageNotFound",
            "ImageRef",
            "ImageReferencedByManifestList",
            "ImageTagDoesNotMatchDigest",
            "InvalidParameter",
            "InvalidResponse",
            "KmsError",
            "LayerClient",
            "LayerError",
            "LayerInaccessible",
            "LayerRef",
            "LayerUrl",
            "LayersNotFound",
            "LimitExceeded",
            "PlatformNotFound",
            "RedactingFilter",
            "RepositoryNotFound",
            "RetryBudget",
            "RetryDetails",
            "RetryPolicy",
            "ServerError",
            "Throttled",
            "TransientError",
            "UnableToGetUpstreamImage",
            "UnableToGetUpstreamLayer",
            "UnknownError",
            "UnsupportedDigest",
            "UnsupportedMediaType",
            "UpstreamAccessDenied",
            "UpstreamTooManyRequests",
            "UpstreamUnavailable",
            "__version__",
            "default_client",
            "download_layer",
            "get_config",
            "get_image",
            "get_layer_url",
            "get_layer_urls",
            "get_on_retry_hooks",
            "is_testing",
            "open_layer",
            "pull_image",
            "redact_url",
            "set_default_client",
            "set_on_retry_hooks",
            "set_testing",
        ]
    )


def test_all_matches_the_public_names() -> None:
    for module in (ecr_layers, ecr_layers.testing):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", "").startswith(module.__name__)
        }
        assert public <= set(module.__all__), public - set(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name)


def test_public_objects_are_documented() -> None:
    for name in ecr_layers.__all__:
        obj = getattr(ecr_layers, name)
        if callable(obj):
            assert obj.__doc__, name
