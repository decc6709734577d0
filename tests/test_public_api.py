from __future__ import annotations
import __future__

import inspect
import pathlib
import types
import typing

import pytest

import ecr_layers
import ecr_layers.aio
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
            "Export",
            "DestinationError",
            "DigestMismatch",
            "DownloadError",
            "DownloadUrlExpired",
            "ECRError",
            "EndpointTimeout",
            "EndpointUnreachable",
            "FileNotInImage",
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
            "UnsafeLayer",
            "UnsupportedDigest",
            "UnsupportedMediaType",
            "UpstreamAccessDenied",
            "UpstreamTooManyRequests",
            "UpstreamUnavailable",
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
    )


def test_the_asyncio_all_is_pinned() -> None:
    assert sorted(ecr_layers.aio.__all__) == [
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


PACKAGES = [ecr_layers, ecr_layers.aio, ecr_layers.testing]


def public_names(module: types.ModuleType) -> set[str]:
    """The names a module binds without a leading underscore: whatever it defines or
    imports (constants and other packages' objects too), but its submodules and what it
    imports from typing and __future__ for its annotations."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(typing, name, object()) is not value
        and getattr(__future__, name, object()) is not value
    }


@pytest.mark.parametrize("module", PACKAGES, ids=lambda m: m.__name__)
def test_all_matches_the_public_names(module: types.ModuleType) -> None:
    public = public_names(module)
    assert public <= set(module.__all__), public - set(module.__all__)
    # What __all__ names beyond them is looked up on first use (the module's __getattr__).
    for name in module.__all__:
        if name not in public:  # not bound yet: the module's __getattr__ must bind it
            assert getattr(module, "__getattr__", None) is not None, name
        assert hasattr(module, name), name


@pytest.mark.parametrize("module", PACKAGES, ids=lambda m: m.__name__)
def test_public_objects_are_documented(module: types.ModuleType) -> None:
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, f"{module.__name__}.{name}"


# Every method both clients have, and every module-level function on a default client.
_SHARED = [
    "get_layer_url",
    "get_layer_urls",
    "download_layer",
    "get_image",
    "get_config",
    "open_layer",
    "pull_image",
    "export_rootfs",
    "read_file",
]


def _parameters(function: typing.Callable[..., object]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", _SHARED)
def test_both_clients_take_the_same_arguments(name: str) -> None:
    # The byte-moving methods are made from one definition (`_operations`); the others
    # are written per client.  Either way a caller moving to asyncio changes nothing
    # but the await.
    sync = getattr(ecr_layers.LayerClient, name)
    async_ = getattr(ecr_layers.aio.AsyncLayerClient, name)
    assert _parameters(async_) == _parameters(sync)
    assert inspect.iscoroutinefunction(async_)
    assert not inspect.iscoroutinefunction(sync)
    assert async_.__doc__
    assert sync.__doc__
    assert async_.__qualname__ == f"AsyncLayerClient.{name}"


@pytest.mark.parametrize("name", _SHARED)
@pytest.mark.parametrize(
    ("module", "client"),
    [(ecr_layers, ecr_layers.LayerClient), (ecr_layers.aio, ecr_layers.aio.AsyncLayerClient)],
)
def test_module_functions_take_their_methods_arguments(
    name: str, module: types.ModuleType, client: type
) -> None:
    function, method = getattr(module, name), getattr(client, name)
    assert _parameters(function) == _parameters(method)[1:]  # all but self
    assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(method)
    assert f"{client.__name__}.{name}" in (function.__doc__ or "")


def test_module_functions_call_the_default_clients_own_methods(
    local_ecr: ecr_layers.testing.LocalECR,
) -> None:
    # set_default_client is how a test swaps the client: a subclass's methods (or a
    # test double's) must be the ones the module-level functions reach.
    from unittest import mock

    calls: list[str] = []

    class Mine(ecr_layers.LayerClient):
        def get_layer_url(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            calls.append("get_layer_url")
            return mine

        def read_file(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            calls.append("read_file")
            return b"mine"

    digest = "sha256:" + "a" * 64
    mine = ecr_layers.LayerUrl("https://example.com/mine", digest)
    landed = pathlib.Path("from the double")
    double = mock.create_autospec(ecr_layers.LayerClient, instance=True)
    double.download_layer.return_value = landed
    previous = ecr_layers.set_default_client(Mine(local_ecr.botocore_client()))
    try:
        assert ecr_layers.get_layer_url("team/app", digest) is mine
        assert ecr_layers.read_file("team/app", "v1", "/etc/os-release") == b"mine"
        ecr_layers.set_default_client(double)
        assert ecr_layers.download_layer("team/app", digest, ".") is landed
    finally:
        ecr_layers.set_default_client(previous)
    assert calls == ["get_layer_url", "read_file"]
    double.download_layer.assert_called_once_with("team/app", digest, ".")
    assert local_ecr.stats.count() == 0


@pytest.mark.parametrize(
    ("function", "returns"),
    [
        (ecr_layers.LayerClient.download_layer, pathlib.Path),
        (ecr_layers.aio.AsyncLayerClient.download_layer, pathlib.Path),
        (ecr_layers.aio.AsyncLayerClient.read_file, bytes),
        (ecr_layers.download_layer, pathlib.Path),
        (ecr_layers.get_layer_url, ecr_layers.LayerUrl),
        (ecr_layers.aio.read_file, bytes),
    ],
)
def test_made_callables_keep_their_type_hints(
    function: typing.Callable[..., object], returns: type
) -> None:
    # Sphinx and typing.get_type_hints read these: a made function's own annotations
    # (*args: P.args, -> T) said "Return type: T" on every page.
    hints = typing.get_type_hints(function)
    assert hints["return"] is returns
    assert "args" not in hints
    assert "self" not in hints
