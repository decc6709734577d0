from __future__ import annotations

import re

import botocore.session
import pytest
from botocore.model import ServiceModel, Shape
from hypothesis import given
from hypothesis import strategies as st

from ecr_layers import InvalidParameter
from ecr_layers._validation import Validator, rules_from_model

from .strategies import (
    DOCUMENTED_REPOSITORY,
    documented_digests,
    documented_registry_ids,
    documented_repository_names,
    near_misses,
)

MODEL = botocore.session.get_session().get_service_model("ecr")
VALIDATOR = rules_from_model(MODEL)


def input_members(model: ServiceModel) -> dict[str, Shape]:
    shape = model.operation_model("GetDownloadUrlForLayer").input_shape
    assert shape is not None
    return dict(shape.members)


MEMBERS = input_members(MODEL)


def model_accepts(field: str, value: str) -> bool:
    """The oracle: the service model's own rule, applied by hand, and the documented
    255-character cap on a digest (the model states no maximum for it)."""
    meta = MEMBERS[field].metadata
    longest = meta.get("max", 255 if field == "layerDigest" else 10**9)
    return (
        meta.get("min", 0) <= len(value) <= longest
        and re.fullmatch(meta["pattern"], value) is not None
    )


def check(validator: Validator, field: str, value: object) -> None:
    validator.rules[field].check(value)


@given(documented_repository_names, documented_digests, documented_registry_ids)
def test_accepts_everything_the_documented_patterns_accept(
    name: str, digest: str, reg: str
) -> None:
    assert re.fullmatch(DOCUMENTED_REPOSITORY, name)  # the strategy draws the pattern's names
    params = VALIDATOR.params(name, digest, reg)
    assert params == {"repositoryName": name, "layerDigest": digest, "registryId": reg}


@pytest.mark.parametrize("field", ["repositoryName", "layerDigest", "registryId"])
@given(value=near_misses)
def test_accepts_exactly_the_model_full_match_set(field: str, value: str) -> None:
    if model_accepts(field, value):
        check(VALIDATOR, field, value)
    else:
        with pytest.raises(InvalidParameter) as info:
            check(VALIDATOR, field, value)
        assert info.value.parameter == field
        assert field in str(info.value)
        assert info.value.attempts == 0
        assert info.value.http_status is None


@given(
    documented_repository_names | near_misses,
    documented_digests | near_misses,
    st.none() | documented_registry_ids | near_misses,
)
def test_accepts_what_the_model_accepts_and_names_the_first_field_it_does_not(
    name: str, digest: str, reg: str | None
) -> None:
    fields = [("repositoryName", name), ("layerDigest", digest)]
    fields += [("registryId", reg)] if reg is not None else []
    refused = [field for field, value in fields if not model_accepts(field, value)]
    if not refused:
        params = VALIDATOR.params(name, digest, reg)
        assert params == {field: value for field, value in fields}
        return
    with pytest.raises(InvalidParameter) as info:
        VALIDATOR.params(name, digest, reg)
    assert info.value.parameter == refused[0]  # checked in the request's order


@pytest.mark.parametrize("name", ["a__b", "a--b", "a---b/c_d"])
def test_model_is_wider_than_the_documented_pattern(name: str) -> None:
    # The documented pattern rejects these; the service (and so we) must not.
    assert (
        re.fullmatch(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", name)
        is None
    )
    VALIDATOR.params(name, "sha256:ab", None)


@pytest.mark.parametrize(
    ("field", "args", "fragment"),
    [
        ("repositoryName", ("a" * 300, "sha256:ab", None), "300 characters long, longer than 256"),
        ("repositoryName", ("a", "sha256:ab", None), "shorter than 2"),
        ("repositoryName", ("team/app\n", "sha256:ab", None), "does not match"),
        ("layerDigest", ("team/app", "sha256:xyz", None), "does not match"),
        ("layerDigest", ("team/app", "sha256", None), "does not match"),
        ("registryId", ("team/app", "sha256:ab", "12345"), "does not match"),
        ("layerDigest", ("team/app", None, None), "must be a str, got NoneType"),
    ],
)
def test_messages_name_the_field_and_the_rule(
    field: str, args: tuple[object, ...], fragment: str
) -> None:
    with pytest.raises(InvalidParameter) as info:
        VALIDATOR.params(*args)
    assert info.value.parameter == field
    assert str(info.value).startswith(field)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_long_values_are_truncated_in_the_message() -> None:
    with pytest.raises(InvalidParameter) as info:
        VALIDATOR.params("x" * 5000, "sha256:ab", None)
    assert len(str(info.value)) < 400


def test_rules_follow_the_model_at_run_time() -> None:
    # A model that relaxes a rule relaxes ours: nothing is hard-coded.
    model = botocore.session.get_session().get_service_model("ecr")
    shape = input_members(model)["repositoryName"]
    shape.metadata["pattern"] = "[A-Z]+"
    try:
        relaxed = rules_from_model(model)
        relaxed.params("UPPER", "sha256:ab", None)
        with pytest.raises(InvalidParameter):
            relaxed.params("lower", "sha256:ab", None)
    finally:
        shape.metadata["pattern"] = MEMBERS["repositoryName"].metadata["pattern"]


def test_a_pattern_python_cannot_compile_is_left_to_the_service() -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    shape = input_members(model)["layerDigest"]
    original = shape.metadata["pattern"]
    shape.metadata["pattern"] = "[unclosed"
    try:
        rules_from_model(model).params("team/app", "anything at all", None)
    finally:
        shape.metadata["pattern"] = original
