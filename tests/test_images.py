"""Images: get_image, get_config and open_layer against LocalECR, through both clients."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tarfile
from collections.abc import Callable
from typing import Any, Literal

import botocore.session
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers._manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Platform,
)
from ecr_layers._validation import Validator
from ecr_layers.testing import LocalECR, tar_layer

from .imaging import FAST, REPO, Synchronous, image_answer, serve_images, sha256
from .strategies import (
    MISSING,
    WRONG_EDGES,
    as_bytes,
    json_values,
    manifests,
    manifests_with_one_field_wrong,
    reference_is_valid,
    references,
    spoil,
)

# -- get_image ------------------------------------------------------------------------


def test_a_tag_naming_one_manifest_is_one_request(ecr: LocalECR, either: Synchronous) -> None:
    layers = [tar_layer({"etc/os-release": b"ID=demo\n"}), tar_layer({"app/main.py": b"print()"})]
    seeded = ecr.push_layers_image(REPO, "v1", layers)
    ecr.stats.reset()
    image = either.get_image(REPO, "v1")
    assert ecr.stats.count("BatchGetImage") == 1
    assert ecr.stats.count() == 1
    assert image.digest == seeded.digest == sha256(image.manifest_bytes)
    assert image.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert [d.digest for d in image.layers] == [layer.digest for layer in layers]
    assert [d.size for d in image.layers] == [len(layer.data) for layer in layers]
    assert image.config.digest == seeded.config_digest
    assert image.total_size == image.config.size + sum(len(layer.data) for layer in layers)
    assert (image.platform, image.index_digest, image.reference) == (None, None, "v1")
    # The same image by its digest.
    assert either.get_image(REPO, image.digest) == attrs_evolve(image, reference=image.digest)


def attrs_evolve(image: ecr_layers.Image, **changes: Any) -> ecr_layers.Image:
    import attrs

    return attrs.evolve(image, **changes)


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_an_index_resolves_to_the_platform_asked_for(
    ecr: LocalECR, either: Synchronous, kind: Literal["oci", "docker"]
) -> None:
    seeded = ecr.push_platform_image(
        REPO, "multi", platforms=("linux/amd64", "linux/arm64/v8"), kind=kind
    )
    ecr.stats.reset()
    image = either.get_image(REPO, "multi", platform="linux/arm64")
    assert ecr.stats.count("BatchGetImage") == 2
    arm = seeded.manifests["linux/arm64/v8"]
    assert (image.digest, image.platform, image.index_digest) == (
        arm.digest,
        "linux/arm64/v8",
        seeded.digest,
    )
    assert [d.digest for d in image.layers] == [layer.digest for layer in arm.layers]
    assert sha256(image.manifest_bytes) == arm.digest
    # The default is this machine's platform, normalised (x86_64 -> amd64).
    here = str(Platform.this_machine())
    if here in seeded.manifests:
        assert either.get_image(REPO, "multi").digest == seeded.manifests[here].digest


def test_attestations_are_never_chosen_and_platform_not_found_lists_the_offer(
    ecr: LocalECR, either: Synchronous
) -> None:
    seeded = ecr.push_platform_image(REPO, "multi", platforms=("linux/amd64", "linux/arm/v7"))
    assert seeded.attestation_digest is not None
    for wanted in ("unknown/unknown", "linux/s390x", "windows/amd64"):
        with pytest.raises(ecr_layers.PlatformNotFound) as caught:
            either.get_image(REPO, "multi", platform=wanted)
        assert caught.value.platforms == ("linux/amd64", "linux/arm/v7")
        assert "linux/arm/v7" in str(caught.value)
        assert (caught.value.repository_name, caught.value.reference) == (REPO, "multi")
    # "linux/arm" means v7, as docker reads it.
    assert either.get_image(REPO, "multi", platform="linux/arm").platform == "linux/arm/v7"


@given(
    st.sampled_from(["x86_64", "amd64", "aarch64", "arm64", "armv7l", "i686", "ppc64le"]),
)
def test_platform_names_are_normalised_as_the_oci_spec_names_them(machine: str) -> None:
    platform = Platform.of("linux", machine, None)
    assert platform.architecture in {"amd64", "arm64", "arm", "386", "ppc64le"}
    assert Platform.parse(str(platform)) == platform


_PLATFORM_PART = st.text("abcxyz019_.-ABC", min_size=1, max_size=8)


@given(
    st.text(max_size=40)
    | st.lists(_PLATFORM_PART | st.text(max_size=3), min_size=1, max_size=4).map("/".join)
)
def test_platforms_parse_as_os_arch_variant_and_nothing_else(text: str) -> None:
    # The oracle: two or three parts of [a-z0-9_.-], in any case.
    parts = text.lower().split("/")
    if not (2 <= len(parts) <= 3 and all(re.fullmatch(r"[a-z0-9_.-]+", p) for p in parts)):
        with pytest.raises(ecr_layers.InvalidParameter) as caught:
            Platform.parse(text)
        assert caught.value.parameter == "platform"
        return
    platform = Platform.parse(text)
    assert platform.os == parts[0]
    # The architecture as the OCI spec names it, and the variant it implies if none.
    assert platform == Platform.of(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    assert Platform.parse(str(platform)) == platform


BAD_REFERENCES = [
    "",
    "x" * 301,
    "has space",
    "a/b",
    "tag@sha",
    "sha256:" + "z" * 64,
    "sha256:",
    "é",
    None,
    42,
    b"v1",
]


@pytest.mark.parametrize("reference", BAD_REFERENCES)
def test_bad_references_are_refused_before_any_request(
    ecr: LocalECR, either: Synchronous, reference: Any
) -> None:
    ecr.stats.reset()
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_image(REPO, reference)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_image("Bad_Repo", "v1")
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_image(REPO, "v1", platform="linux")
    assert ecr.stats.count() == 0


@functools.cache
def validator() -> Validator:
    """The rules a client checks references by; one client's worth, built once."""
    client = botocore.session.get_session().create_client(
        "ecr", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    with ecr_layers.LayerClient(client) as layer_client:  # type: ignore[arg-type]
        return layer_client._validator


@given(references)
def test_tags_are_checked_by_the_documented_rules(reference: str) -> None:
    if not reference_is_valid(reference):
        with pytest.raises(ecr_layers.InvalidParameter) as caught:
            validator().image_params(REPO, reference, None)
        assert caught.value.parameter == ("imageDigest" if ":" in reference else "imageTag")
        return
    params, ref, by_digest = validator().image_params(REPO, reference, None)
    assert ref.reference == reference
    assert by_digest == (":" in reference)
    assert params["imageIds"] == [{("imageDigest" if by_digest else "imageTag"): reference}]


def test_unknown_image_and_repository(ecr: LocalECR, either: Synchronous) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    with pytest.raises(ecr_layers.ImageNotFound) as caught:
        either.get_image(REPO, "nope")
    assert caught.value.reference == "nope"
    assert caught.value.code == "ImageNotFound"
    with pytest.raises(ecr_layers.ImageNotFound):
        either.get_image(REPO, "sha256:" + "0" * 64)
    with pytest.raises(ecr_layers.RepositoryNotFound):
        either.get_image("team/none", "v1")


FAILURE_CODES = sorted(
    botocore.session.get_session().get_service_model("ecr").shape_for("ImageFailureCode").enum  # type: ignore[attr-defined]
)


@pytest.mark.parametrize("code", FAILURE_CODES)
def test_every_failure_code_is_its_own_typed_error_and_transient_ones_are_retried(
    ecr: LocalECR, either: Synchronous, code: str
) -> None:
    from ecr_layers._mapping import BY_FAILURE_CODE

    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    cls = BY_FAILURE_CODE[code]
    ecr.faults.fail_next_images(code, times=10)
    ecr.stats.reset()
    with pytest.raises(cls) as caught:
        either.get_image(REPO, "v1")
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.reference == "v1" or cls is ecr_layers.InvalidParameter
    expected = FAST.attempts if cls.retryable else 1
    assert ecr.stats.count("BatchGetImage") == expected
    assert caught.value.attempts == expected


def test_transient_failure_codes_recover(ecr: LocalECR, either: Synchronous) -> None:
    seeded = ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.faults.fail_next_images("UpstreamUnavailable", times=2)
    ecr.stats.reset()
    assert either.get_image(REPO, "v1").digest == seeded.digest
    assert ecr.stats.count("BatchGetImage") == 3


@pytest.mark.parametrize(
    ("code", "cls", "retried"),
    [
        ("LimitExceededException", ecr_layers.LimitExceeded, True),
        ("UnableToGetUpstreamImageException", ecr_layers.UnableToGetUpstreamImage, False),
        ("ServerException", ecr_layers.ServerError, True),
        ("InvalidParameterException", ecr_layers.InvalidParameter, False),
    ],
)
def test_batch_get_image_exceptions_are_typed(
    ecr: LocalECR,
    either: Synchronous,
    code: str,
    cls: type[ecr_layers.ECRError],
    retried: bool,
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.faults.fail_next("BatchGetImage", 10, code=code, status=500 if retried else 400)
    ecr.stats.reset()
    with pytest.raises(cls) as caught:
        either.get_image(REPO, "v1")
    assert caught.value.code == code
    assert caught.value.image == ecr_layers.ImageRef(REPO, "v1")
    assert ecr.stats.count("BatchGetImage") == (FAST.attempts if retried else 1)


# -- anomalies the service should never send, sent over HTTP ----------------------------


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "c" * 64,
            "size": 2,
        },
        "layers": [],
    }
)


def test_manifest_bytes_must_hash_to_the_digest_served_and_asked_for(
    ecr: LocalECR, either: Synchronous
) -> None:
    serve_images(ecr, image_answer(MANIFEST, "sha256:" + "0" * 64))
    with pytest.raises(ecr_layers.DigestMismatch) as caught:
        either.get_image(REPO, "v1")
    assert caught.value.actual == sha256(MANIFEST.encode())
    # A digest reference answered with another (well-formed) image.
    serve_images(ecr, image_answer(MANIFEST))
    with pytest.raises(ecr_layers.DigestMismatch):
        either.get_image(REPO, "sha256:" + "1" * 64)
    assert ecr.stats.count("BatchGetImage") == 2  # neither retried
    serve_images(ecr, image_answer(MANIFEST))
    assert either.get_image(REPO, sha256(MANIFEST.encode())).layers == ()


def test_schema_1_and_unknown_media_types_are_refused(ecr: LocalECR, either: Synchronous) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []})
    serve_images(ecr, image_answer(schema1))
    with pytest.raises(ecr_layers.UnsupportedMediaType):
        either.get_image(REPO, "v1")
    serve_images(ecr, image_answer(MANIFEST, media_type="application/x-something"))
    with pytest.raises(ecr_layers.UnsupportedMediaType) as caught:
        either.get_image(REPO, "v1")
    assert caught.value.media_type == "application/x-something"


def test_manifests_over_the_cap_are_refused(ecr: LocalECR, either: Synchronous) -> None:
    big = MANIFEST[:-1] + ', "annotations": {"x": "' + "a" * (4 * 1024 * 1024) + '"}}'
    serve_images(ecr, image_answer(big))
    with pytest.raises(ecr_layers.BlobTooLarge) as caught:
        either.get_image(REPO, "v1")
    assert caught.value.limit == 4 * 1024 * 1024


def descriptor_of(raw: dict[str, Any]) -> tuple[str, str, int, dict[str, str]]:
    return raw["mediaType"], raw["digest"], raw["size"], raw.get("annotations", {})


def fields(descriptor: ecr_layers.Descriptor) -> tuple[str, str, int, dict[str, str]]:
    # Descriptor's equality leaves the annotations out; they are compared here.
    return descriptor.media_type, descriptor.digest, descriptor.size, dict(descriptor.annotations)


@given(manifests, st.data())
def test_a_valid_manifest_parses_to_what_it_says(
    document: dict[str, Any], data: st.DataObject
) -> None:
    from ecr_layers._manifest import load, manifest_parts

    ref = ecr_layers.ImageRef(REPO, "v1")
    served_type = data.draw(st.sampled_from([None, document["mediaType"]]))
    kind, parsed = load(data.draw(as_bytes(document)), served_type, ref)
    assert (kind, parsed) == (document["mediaType"], document)
    config, layers = manifest_parts(parsed, ref)
    assert fields(config) == descriptor_of(document["config"])
    assert [fields(layer) for layer in layers] == [descriptor_of(d) for d in document["layers"]]


#: A manifest that is valid as it is: the base of the examples below.
VALID_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "c", "digest": "sha256:" + "c" * 64, "size": 2},
    "layers": [{"mediaType": "l", "digest": "sha256:" + "a" * 64, "size": 0}],
}


def with_edges(test: Callable[..., None]) -> Callable[..., None]:
    """*test* run on `VALID_MANIFEST` with every edge of `WRONG_EDGES` put in each descriptor."""
    for holder in ("config", "layers[0]"):
        for member, values in WRONG_EDGES.items():
            for value in values:
                test = example(spoil(VALID_MANIFEST, f"{holder}.{member}", value))(test)
    return test


@given(manifests_with_one_field_wrong())
@example(spoil(VALID_MANIFEST, "layers", None))
@example(spoil(VALID_MANIFEST, "layers", {}))
@example(spoil(VALID_MANIFEST, "config", MISSING))
@example(spoil(VALID_MANIFEST, "config", []))
@with_edges
def test_a_manifest_with_one_field_wrong_is_refused_naming_it(
    case: tuple[dict[str, Any], str],
) -> None:
    from ecr_layers._manifest import load, manifest_parts

    document, wrong = case
    ref = ecr_layers.ImageRef(REPO, "v1")
    _kind, parsed = load(json.dumps(document).encode(), None, ref)
    with pytest.raises(ecr_layers.InvalidResponse) as caught:
        manifest_parts(parsed, ref)
    assert type(caught.value) is ecr_layers.InvalidResponse
    assert caught.value.image == ref
    if wrong == "layers":
        assert "no list of layers" in caught.value.message
    elif wrong.startswith("config"):
        assert "config is not a valid descriptor" in caught.value.message
    else:
        index = int(wrong.split("[")[1].split("]")[0])
        assert f"layer {index} is not a valid descriptor" in caught.value.message


def test_the_base_of_those_examples_is_valid() -> None:
    from ecr_layers._manifest import load, manifest_parts

    ref = ecr_layers.ImageRef(REPO, "v1")
    manifest_parts(load(json.dumps(VALID_MANIFEST).encode(), None, ref)[1], ref)


@given(
    json_values.flatmap(as_bytes) | st.binary(max_size=300),
    st.sampled_from([None, "application/x-other"]),
)
def test_what_is_not_a_manifest_object_is_refused_by_kind(
    data: bytes, served_type: str | None
) -> None:
    from ecr_layers._manifest import load

    ref = ecr_layers.ImageRef(REPO, "v1")
    try:
        document = json.loads(data)
    except ValueError:
        expected: type[ecr_layers.ECRError] = ecr_layers.InvalidResponse
    else:
        # Accepted only as an object whose media type (the served one first) is readable.
        readable = isinstance(document, dict) and (served_type or document.get("mediaType")) in (
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_LIST,
        )
        if readable:
            load(data, served_type, ref)
            return
        expected = (
            ecr_layers.UnsupportedMediaType
            if isinstance(document, dict)
            else ecr_layers.InvalidResponse
        )
    with pytest.raises(ecr_layers.ECRError) as caught:
        load(data, served_type, ref)
    assert type(caught.value) is expected


# -- get_config -----------------------------------------------------------------------


def test_the_config_is_verified_and_names_the_uncompressed_layers(
    ecr: LocalECR, either: Synchronous
) -> None:
    layers = [tar_layer({"a.txt": b"alpha"}), tar_layer({"b.txt": b"beta"})]
    ecr.push_layers_image(REPO, "v1", layers, platform="linux/arm64/v8")
    image = either.get_image(REPO, "v1")
    ecr.stats.reset()
    config = either.get_config(image)
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in layers]
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert ecr.stats.count("GetDownloadUrlForLayer") == 1
    assert ecr.stats.blob_count(image.config.digest) == 1
    # By repository and reference: the manifest first, then the config.
    assert either.get_config(REPO, "v1") == config


def test_a_config_over_the_cap_is_refused_before_reading_past_it(
    ecr: LocalECR, either: Synchronous
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    ecr.stats.reset()
    with pytest.raises(ecr_layers.BlobTooLarge) as caught:
        either.get_config(image, max_bytes=image.config.size - 1)
    assert ecr.stats.count() == 0  # the manifest said so: nothing was asked
    assert caught.value.limit == image.config.size - 1
    for bad in (0, -1, True, 1.5, "8"):
        with pytest.raises(ecr_layers.InvalidParameter):
            either.get_config(image, max_bytes=bad)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_config(REPO)


def test_a_config_whose_size_lies_is_not_read_past_the_cap(
    ecr: LocalECR, either: Synchronous
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    small = attrs_evolve(image, config=attrs_evolve_descriptor(image.config, size=10))
    with pytest.raises(ecr_layers.BlobTooLarge):
        either.get_config(small, max_bytes=20)


def attrs_evolve_descriptor(
    descriptor: ecr_layers.Descriptor, **changes: Any
) -> ecr_layers.Descriptor:
    import attrs

    return attrs.evolve(descriptor, **changes)


def test_a_corrupt_config_is_a_digest_mismatch(ecr: LocalECR, either: Synchronous) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    image = either.get_image(REPO, "v1")
    ecr.faults.corrupt_next_blobs()
    with pytest.raises(ecr_layers.DigestMismatch):
        either.get_config(image)


# -- open_layer -----------------------------------------------------------------------


def names_in(stream: Any) -> list[str]:
    """The names in a gzipped tar read from *stream* (either kind's, as `Synchronous`)."""
    with tarfile.open(fileobj=stream, mode="r|gz") as tar:
        return [member.name for member in tar]


def test_a_layer_streams_into_tarfile(ecr: LocalECR, either: Synchronous) -> None:
    layer = tar_layer({"etc/hosts": b"127.0.0.1 localhost\n", "bin/tool": b"\x7fELF" * 1000})
    ecr.push_layers_image(REPO, "v1", [layer])
    with either.open_layer(REPO, layer.digest) as stream:
        assert names_in(stream) == sorted(layer.files)


def test_a_cut_stream_resumes_with_range_and_an_expired_url_is_renewed(
    ecr: LocalECR, either: Synchronous
) -> None:
    from ecr_layers.testing import random_layer

    layer = random_layer(3 * 1024 * 1024, seed=1)
    ecr.push_layers_image(REPO, "v1", [layer])
    ecr.faults.truncate_next_blobs(1, after=1024 * 1024)
    ecr.stats.reset()
    with either.open_layer(REPO, layer.digest) as stream:
        assert stream.read() == layer.data
    assert ecr.stats.blob_count(layer.digest) == 2
    assert ecr.stats.count("GetDownloadUrlForLayer") == 1
    # A URL that expires between the lookup and the first read is renewed once.
    ecr.faults.expire_next_urls(1)
    ecr.stats.reset()
    with either.open_layer(REPO, layer.digest) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == layer.digest.split(":")[1]
    assert ecr.stats.count("GetDownloadUrlForLayer") == 2


def test_the_read_that_reaches_the_end_of_a_corrupt_layer_raises(
    ecr: LocalECR, either: Synchronous
) -> None:
    layer = tar_layer({"a.txt": b"a" * 5000})
    ecr.push_layers_image(REPO, "v1", [layer])
    ecr.faults.corrupt_next_blobs()
    with either.open_layer(REPO, layer.digest) as stream:

        def read_all() -> None:
            while stream.read(1000):
                pass

        with pytest.raises(ecr_layers.DigestMismatch) as caught:
            read_all()
        # And it stays raised: no later read ends cleanly.
        with pytest.raises(ecr_layers.DigestMismatch):
            stream.read()
    assert caught.value.expected == layer.digest
    assert caught.value.layer_digest == layer.digest


def test_closing_early_releases_the_connection(
    ecr: LocalECR, client: ecr_layers.LayerClient
) -> None:
    # The synchronous reader's internals: sync only.
    from ecr_layers.testing import random_layer

    layer = random_layer(2 * 1024 * 1024, seed=2)
    ecr.push_layers_image(REPO, "v1", [layer])
    stream = client.open_layer(REPO, layer.digest)
    assert stream.read(10) == layer.data[:10]
    raw: Any = stream.raw
    response = raw._response
    assert response is not None
    stream.close()
    assert raw._response is None
    assert response.closed
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)


def test_open_layer_checks_its_inputs_and_looks_up_at_once(
    ecr: LocalECR, either: Synchronous
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.stats.reset()
    for digest in (None, 42, "notadigest", "sha256:abc"):
        with pytest.raises((ecr_layers.InvalidParameter, ecr_layers.UnsupportedDigest)):
            either.open_layer(REPO, digest)
    assert ecr.stats.count() == 0
    with pytest.raises(ecr_layers.LayersNotFound):
        either.open_layer(REPO, "sha256:" + "0" * 64)


def test_a_stream_is_bounded_by_its_descriptor(ecr: LocalECR, either: Synchronous) -> None:
    layer = tar_layer({"a.txt": b"a" * 10_000})
    ecr.push_layers_image(REPO, "v1", [layer])
    media_type = either.get_image(REPO, "v1").layers[0].media_type
    small = ecr_layers.Descriptor(media_type, layer.digest, len(layer.data) - 1)
    with pytest.raises(ecr_layers.BlobTooLarge), either.open_layer(REPO, small) as stream:
        stream.read()
