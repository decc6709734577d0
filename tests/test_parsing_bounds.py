"""JSON from the service is parsed within bounds: a depth and a size, exact, each an
`InvalidResponse` that names its limit (never a `RecursionError`); and a config is held
to the size its descriptor gives, as layers are."""

from __future__ import annotations

import contextlib
import json
import pathlib
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import _cli
from ecr_layers._manifest import MAX_JSON_DEPTH, nests_deeper_than, parse_json
from ecr_layers.testing import LocalECR, tar_layer

from .imaging import REPO, Synchronous, image_answer, serve_images, sha256

IMAGE = ecr_layers.ImageRef(REPO, "v1")
#: Deep enough for any Python's recursion limit, parser and stack.
VERY_DEEP = 100_000

# -- the bounded parser, on its own ------------------------------------------------------

#: Text that looks like JSON's structure but is inside strings, where it does not count.
_TRICKY = st.text(
    st.sampled_from('[]{}"\\,:/ aé\n\t\u2028\U0001f600')
    | st.characters(codec="utf-8"),  # no lone surrogate: a server sends UTF-8
    max_size=8,
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TRICKY
)
#: Small values of any shape, to stand beside the deepest one.
_SHALLOW = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_TRICKY, inner, max_size=2),
    max_leaves=4,
)


@st.composite
def nested(draw: st.DrawFn, depth: int) -> Any:
    """A JSON value whose arrays and objects nest exactly *depth* deep."""
    # Built from the inside out, without recursion, and with few draws per level: a
    # strategy's own recursion makes a nest of 65 slow to draw and slower to shrink.
    is_list = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    keys = draw(st.lists(_TRICKY, min_size=1, max_size=3, unique=True))
    # A few levels get small values beside the deeper one: a depth is a maximum, not a count.
    beside = dict(
        draw(st.lists(st.tuples(st.integers(0, max(depth - 1, 0)), _SHALLOW), max_size=3))
    )
    first = draw(st.booleans())
    value: Any = draw(_SCALARS)
    for below in range(depth):
        key = keys[below % len(keys)]
        pairs = [(key, value)]
        if below in beside and depth_of(beside[below]) <= below:
            pairs.insert(0 if first else 1, (key + "+", beside[below]))  # a key of its own
        value = [v for _, v in pairs] if is_list[below] else dict(pairs)
    return value


def depth_of(value: Any) -> int:
    """The oracle: the nesting of a parsed value, counted on the value, not the text."""
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """*value* as JSON, in one of the spellings a server may use."""
    text = json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.none() | st.integers(0, 2)),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )
    return text.encode()


@given(st.data(), st.integers(0, MAX_JSON_DEPTH + 3))
def test_the_depth_counted_is_the_depth_parsed(data: st.DataObject, depth: int) -> None:
    value = data.draw(nested(depth))
    text = data.draw(encoded(value)).decode()
    assert depth_of(value) == depth
    assert not nests_deeper_than(text, depth)
    assert depth == 0 or nests_deeper_than(text, depth - 1)


@given(st.data())
def test_at_the_depth_limit_parses_and_one_level_deeper_is_invalid_response(
    data: st.DataObject,
) -> None:
    at_limit = data.draw(nested(MAX_JSON_DEPTH))
    assert parse_json(data.draw(encoded(at_limit)), "it", IMAGE, max_bytes=10**7) == at_limit
    past = data.draw(st.sampled_from([[at_limit], {"k": at_limit}, [1, at_limit, {}]]))
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        parse_json(data.draw(encoded(past)), "it", IMAGE, max_bytes=10**7)
    assert f"{MAX_JSON_DEPTH} levels" in caught.value.message
    assert caught.value.repository_name == REPO


@given(st.integers(0, 4).flatmap(nested).flatmap(encoded), st.integers(0, 50))
def test_at_the_size_limit_parses_and_one_byte_more_is_invalid_response(
    data: bytes, room: int
) -> None:
    limit = len(data) + room
    at_limit = data + b" " * room  # whitespace after the value: still the same JSON
    assert parse_json(at_limit, "it", IMAGE, max_bytes=limit) == json.loads(data)
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        parse_json(at_limit + b" ", "it", IMAGE, max_bytes=limit)
    assert f"{limit} bytes" in caught.value.message


@given(
    st.binary(max_size=200)
    | st.text(st.sampled_from('[]{}"\\,:1 a'), max_size=300).map(str.encode)
    | st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2).map(lambda n: b"[" * n)
)
def test_any_bytes_are_a_value_or_invalid_response(data: bytes) -> None:
    with contextlib.suppress(ecr_layers.InvalidResponse):
        parse_json(data, "it", IMAGE, max_bytes=1000)


@pytest.mark.parametrize(
    "text",
    [
        "[" * VERY_DEEP,
        "[" * VERY_DEEP + "]" * VERY_DEEP,
        '{"a":' * VERY_DEEP + "1" + "}" * VERY_DEEP,
    ],
    ids=["unclosed", "closed", "objects"],
)
def test_json_far_too_deep_is_invalid_response_not_recursion_error(text: str) -> None:
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        parse_json(text.encode(), "it", IMAGE, max_bytes=10**7)
    assert f"{MAX_JSON_DEPTH} levels" in caught.value.message


# -- through either client: manifests, configs, API answers --------------------------------


def nest(depth: int) -> Any:
    value: Any = 0
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


def manifest_nested(image: ecr_layers.Image, depth: int) -> str:
    """*image*'s manifest with a field that makes the whole nest *depth* deep."""
    document = json.loads(image.manifest_bytes)
    document["x"] = nest(depth - 1)  # the manifest itself is one level
    return json.dumps(document)


def test_a_manifest_at_the_depth_limit_is_read_and_one_level_deeper_is_invalid_response(
    ecr: LocalECR, either: Synchronous
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    at_limit = manifest_nested(image, MAX_JSON_DEPTH)
    serve_images(ecr, image_answer(at_limit, media_type=image.media_type))
    assert either.get_image(REPO, "v1").digest == sha256(at_limit.encode())
    serve_images(ecr, image_answer(manifest_nested(image, MAX_JSON_DEPTH + 1)))
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        either.get_image(REPO, "v1")
    assert f"{MAX_JSON_DEPTH} levels" in caught.value.message
    assert caught.value.reference == "v1"


def test_a_config_nested_too_deep_is_invalid_response(ecr: LocalECR, either: Synchronous) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    results = []
    for depth in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1):
        config = json.dumps({"config": nest(depth - 1)}).encode()
        ecr.push_image(REPO, [config], tag=f"holds-{depth}")  # stored, so it can be fetched
        nested_config = ecr_layers.Descriptor(image.config.media_type, sha256(config), len(config))
        try:
            results.append(either.get_config(attrs.evolve(image, config=nested_config)))
        except ecr_layers.InvalidResponse as error:
            results.append(error.message)
    assert results[0] == {"config": nest(MAX_JSON_DEPTH - 1)}
    assert f"{MAX_JSON_DEPTH} levels" in results[1]


@pytest.mark.parametrize("operation", ["BatchGetImage", "GetDownloadUrlForLayer"])
def test_an_api_answer_nested_too_deep_is_invalid_response(
    ecr: LocalECR, either: Synchronous, operation: str
) -> None:
    seeded = ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    body = b'{"images": ' + b"[" * VERY_DEEP + b"]" * VERY_DEEP + b"}"
    ecr.faults.fail_next(operation, status=200, body=body)
    call, argument = (
        (either.get_image, "v1")
        if operation == "BatchGetImage"
        else (either.get_layer_url, seeded.layers[0].digest)
    )
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        call(REPO, argument)
    assert "recursion limit" in caught.value.message
    assert ecr.stats.count(operation) == 1  # a bad answer, not retried


@pytest.mark.parametrize("where", ["api", "manifest"])
def test_the_cli_reports_json_too_deep_in_one_line(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    local_ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    if where == "api":
        body = b'{"images": ' + b"[" * VERY_DEEP + b"]" * VERY_DEEP + b"}"
        local_ecr.faults.fail_next("BatchGetImage", status=200, body=body)
    else:
        deep = '{"schemaVersion": 2, "x": ' + "[" * VERY_DEEP + "]" * VERY_DEEP + "}"
        serve_images(local_ecr, image_answer(deep))
    status = _cli.main(["image", REPO, "v1"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert status == _cli.exit_code(ecr_layers.InvalidResponse("x"))
    assert err.startswith("ecr-layers: InvalidResponse: ")
    assert len(err.splitlines()) == 1
    assert out == ""


# -- a config is held to its descriptor's size ---------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [(-1, ecr_layers.BlobTooLarge), (1, ecr_layers.InvalidResponse)],
    ids=["smaller", "larger"],
)
def test_get_config_holds_the_config_to_its_descriptors_size(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    change: int,
    error: type[ecr_layers.ECRError],
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    assert either.get_config(image)["architecture"] == "amd64"
    lying = attrs.evolve(image, config=attrs.evolve(image.config, size=image.config.size + change))
    with pytest.raises(error) as caught:
        either.get_config(lying)
    assert caught.value.layer_digest == image.config.digest
    assert "bytes" in caught.value.message


def test_an_api_answer_longer_than_the_cap_is_refused_by_its_stated_length(
    either: Synchronous, ecr: LocalECR
) -> None:
    from ecr_layers._watchdog import API_ANSWER_MAX

    seeded = ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.faults.fail_next("GetDownloadUrlForLayer", status=200, body=b" " * (API_ANSWER_MAX + 1))
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        either.get_layer_url(REPO, seeded.layers[0].digest)
    assert str(API_ANSWER_MAX) in caught.value.message
    assert ecr.stats.count("GetDownloadUrlForLayer") == 1  # a bad answer, not retried


def _layer_url_once(kind: str, digest: str, **settings: Any) -> None:
    """Ask a client of *kind* made with *settings* for *digest*'s URL, then close it."""
    if kind == "sync":
        with ecr_layers.LayerClient(**settings) as client:
            client.get_layer_url(REPO, digest)
        return
    import asyncio

    from ecr_layers.aio import AsyncLayerClient

    async def call() -> None:
        async with AsyncLayerClient(**settings) as aclient:
            await aclient.get_layer_url(REPO, digest)

    asyncio.run(call())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_api_answer_that_never_ends_is_refused_at_the_cap(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import resource

    from ecr_layers._watchdog import API_ANSWER_MAX

    from . import hostile

    for name, value in local_ecr.env().items():
        monkeypatch.setenv(name, value)
    settings: dict[str, Any] = {"retry_policy": ecr_layers.RetryPolicy(attempts=1, timeout=10)}
    digest = "sha256:" + "ab" * 32
    with hostile.serving(hostile.endless_json) as host:
        settings["endpoint_url"] = f"http://127.0.0.1:{host.port}"
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(ecr_layers.InvalidResponse) as caught:
            _layer_url_once(kind, digest, **settings)
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert str(API_ANSWER_MAX) in caught.value.message
    assert host.requests == 1
    # botocore keeps what it read: at most the cap (and a copy as it joins), not the
    # endless rest.
    assert grown_kib < 4 * API_ANSWER_MAX // 1024, grown_kib


@pytest.mark.parametrize("cut", ["reset", "close"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_api_answer_cut_short_is_a_transient_error_retried_within_the_attempts(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch, kind: str, cut: str
) -> None:
    """An answer that ends short of its stated length, by a reset or a clean close, is
    the transient `EndpointUnreachable`, retried.  The asyncio client reads an answer's
    body itself (to hold it to the cap); botocore reads the sync one with urllib3's
    length check off, so a clean close once gave the parser the first bytes alone (an
    `InvalidResponse`, not retried; seen 1 run in 60 with a reset, every run with a close).
    """

    from . import hostile

    for name, value in local_ecr.env().items():
        monkeypatch.setenv(name, value)
    policy = ecr_layers.RetryPolicy(attempts=2, timeout=10, wait_initial=0, wait_max=0)
    digest = "sha256:" + "ab" * 32
    behaviour = hostile.reset_after(10) if cut == "reset" else hostile.close_after(10)
    with hostile.serving(behaviour) as host:
        url = f"http://127.0.0.1:{host.port}"
        with pytest.raises(ecr_layers.EndpointUnreachable) as caught:
            _layer_url_once(kind, digest, endpoint_url=url, retry_policy=policy)
        assert host.requests == 2
    assert caught.value.layer_digest == digest
