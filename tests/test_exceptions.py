from __future__ import annotations

import errno
import pickle

import pytest

import ecr_layers
from ecr_layers import _exceptions

ALL_ERRORS = [
    cls
    for cls in vars(_exceptions).values()
    if isinstance(cls, type) and issubclass(cls, ecr_layers.ECRError)
]
LAYER = ecr_layers.LayerRef("team/app", "sha256:ab", "123456789012")
IMAGE = ecr_layers.ImageRef("team/app", "v1", "123456789012")


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_pickles_to_the_same_class_with_the_same_attributes(cls: type[ecr_layers.ECRError]) -> None:
    exc = cls(
        "boom",
        code="SomeCode",
        request_id="rid-1",
        http_status=400,
        layer=LAYER,
        image=IMAGE,
        attempts=3,
        retry_after=2.5,
    )
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.reference == "v1"
    assert "image 'v1'" in str(clone)
    assert type(clone) is cls
    assert vars(clone) == vars(exc)
    assert str(clone) == str(exc)
    assert (clone.repository_name, clone.layer_digest, clone.registry_id) == (
        "team/app",
        "sha256:ab",
        "123456789012",
    )
    assert clone.retry_after == 2.5
    assert clone.retryable is issubclass(cls, ecr_layers.TransientError)


def test_subclass_specific_attributes_survive_pickling() -> None:
    exc = ecr_layers.InvalidParameter("bad", parameter="layerDigest")
    assert pickle.loads(pickle.dumps(exc)).parameter == "layerDigest"
    mismatch = ecr_layers.DigestMismatch(
        "bad bytes", expected="sha256:aa", actual="sha256:bb", layer=LAYER
    )
    clone = pickle.loads(pickle.dumps(mismatch))
    assert (clone.expected, clone.actual) == ("sha256:aa", "sha256:bb")
    full = ecr_layers.DestinationError("disk full", errno=errno.ENOSPC, path="/x", layer=LAYER)
    copy = pickle.loads(pickle.dumps(full))
    assert (copy.errno, copy.path) == (errno.ENOSPC, "/x")


def test_layer_errors_need_their_layer() -> None:
    # The layer is what makes e.repository_name a str: a layer error without one is a bug.
    for cls in ALL_ERRORS:
        if issubclass(cls, ecr_layers.LayerError):
            with pytest.raises(TypeError):
                cls("x", layer=None)


def test_image_errors_need_their_image() -> None:
    # As for layers: in `except ImageNotFound as e`, e.reference is a str.
    image_classes = [c for c in ALL_ERRORS if issubclass(c, ecr_layers.ImageError)]
    assert ecr_layers.ImageTagDoesNotMatchDigest in image_classes
    assert issubclass(ecr_layers.ImageTagDoesNotMatchDigest, ecr_layers.ImageNotFound)
    for cls in image_classes:
        with pytest.raises(TypeError):
            cls("x", image=None)
    error = ecr_layers.PlatformNotFound("no", platforms=("linux/amd64",), image=IMAGE)
    assert pickle.loads(pickle.dumps(error)).platforms == ("linux/amd64",)
    assert (error.repository_name, error.reference, error.registry_id) == (
        "team/app",
        "v1",
        "123456789012",
    )


def test_every_class_is_exported_and_drawn_in_the_module_docstring() -> None:
    doc = _exceptions.__doc__ or ""
    for cls in ALL_ERRORS:
        assert cls.__name__ in ecr_layers.__all__
        assert cls.__name__ in doc
        assert cls.__doc__, f"{cls.__name__} has no docstring"


def test_input_errors_are_value_errors_and_transient_ones_share_a_base() -> None:
    assert issubclass(ecr_layers.InvalidParameter, ValueError)
    assert issubclass(ecr_layers.UnsupportedDigest, ValueError)
    assert issubclass(ecr_layers.DestinationError, OSError)
    for cls in (
        ecr_layers.ServerError,
        ecr_layers.Throttled,
        ecr_layers.EndpointTimeout,
        ecr_layers.EndpointUnreachable,
        ecr_layers.DownloadUrlExpired,
    ):
        assert issubclass(cls, ecr_layers.TransientError)
        assert cls.retryable
    for permanent in (
        ecr_layers.LayersNotFound,
        ecr_layers.LayerInaccessible,
        ecr_layers.AccessDenied,
        ecr_layers.InvalidParameter,
        ecr_layers.RepositoryNotFound,
        ecr_layers.DestinationError,
        ecr_layers.ConfigurationError,
    ):
        assert not issubclass(permanent, ecr_layers.TransientError)
        assert not permanent.retryable


def test_str_carries_the_context() -> None:
    exc = ecr_layers.LayersNotFound(
        "not here", request_id="rid", http_status=400, layer=LAYER, attempts=2
    )
    text = str(exc)
    for part in (
        "not here",
        "LayersNotFoundException",
        "HTTP 400",
        "'team/app'",
        "rid",
        "2 attempts",
        "123456789012",
    ):
        assert part in text
