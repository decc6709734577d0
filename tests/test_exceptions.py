from __future__ import annotations

import pickle

import pytest

import ecr_layers
from ecr_layers import _exceptions

ALL_ERRORS = [
    cls
    for cls in vars(_exceptions).values()
    if isinstance(cls, type) and issubclass(cls, ecr_layers.ECRError)
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_pickles_to_the_same_class_with_the_same_attributes(cls: type[ecr_layers.ECRError]) -> None:
    exc = cls(
        "boom",
        code="SomeCode",
        request_id="rid-1",
        http_status=400,
        repository_name="team/app",
        layer_digest="sha256:ab",
        registry_id="123456789012",
        attempts=3,
    )
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls
    assert vars(clone) == vars(exc)
    assert str(clone) == str(exc)


def test_subclass_specific_attributes_survive_pickling() -> None:
    exc = ecr_layers.InvalidParameter("bad", parameter="layerDigest")
    assert pickle.loads(pickle.dumps(exc)).parameter == "layerDigest"
    mismatch = ecr_layers.DigestMismatch("bad bytes", expected="sha256:aa", actual="sha256:bb")
    clone = pickle.loads(pickle.dumps(mismatch))
    assert (clone.expected, clone.actual) == ("sha256:aa", "sha256:bb")


def test_every_class_is_exported_and_drawn_in_the_module_docstring() -> None:
    doc = _exceptions.__doc__ or ""
    for cls in ALL_ERRORS:
        assert cls.__name__ in ecr_layers.__all__
        assert cls.__name__ in doc
        assert cls.__doc__, f"{cls.__name__} has no docstring"


def test_input_errors_are_value_errors_and_transient_ones_share_a_base() -> None:
    assert issubclass(ecr_layers.InvalidParameter, ValueError)
    for cls in (
        ecr_layers.ServerError,
        ecr_layers.Throttled,
        ecr_layers.EndpointTimeout,
        ecr_layers.EndpointUnreachable,
    ):
        assert issubclass(cls, ecr_layers.TransientError)
    for permanent in (
        ecr_layers.LayersNotFound,
        ecr_layers.LayerInaccessible,
        ecr_layers.AccessDenied,
        ecr_layers.InvalidParameter,
        ecr_layers.RepositoryNotFound,
    ):
        assert not issubclass(permanent, ecr_layers.TransientError)


def test_str_carries_the_context() -> None:
    exc = ecr_layers.LayersNotFound(
        "not here",
        request_id="rid",
        http_status=400,
        repository_name="team/app",
        layer_digest="sha256:ab",
        attempts=2,
    )
    text = str(exc)
    for part in (
        "not here",
        "LayersNotFoundException",
        "HTTP 400",
        "'team/app'",
        "rid",
        "2 attempts",
    ):
        assert part in text
