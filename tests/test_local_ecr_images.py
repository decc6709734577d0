"""LocalECR's images: real layers, manifests of every kind, and BatchGetImage as documented.

Driven with a plain botocore client; blobs are fetched through the pre-signed URLs
the endpoint hands out, and every digest is recomputed here from the bytes served.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import itertools
import json
import re
import tarfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
import urllib3
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from ecr_layers.testing import (
    Layer,
    LocalECR,
    SeededImage,
    digest_of,
    push_image_via_api,
    random_layer,
    tar_layer,
)
from ecr_layers.testing._oci import Platform
from ecr_layers.testing._shapes import image_failure_codes
from tests.strategies import DOCUMENTED_DIGEST

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
IN_TOTO = "application/vnd.in-toto+json"
# The tag rule ECR states in its error message, written out independently of LocalECR's.
ECR_TAG = r"[a-zA-Z0-9_.-]{1,300}"
NO_SUCH_DIGEST = "sha256:" + "0" * 64
HTTP = urllib3.PoolManager(retries=False)
_repos = itertools.count()


@pytest.fixture(scope="module")
def ecr() -> Iterator[LocalECR]:
    # One endpoint for the module (hypothesis runs many examples against it); each
    # test uses repositories of its own.
    with LocalECR() as server:
        yield server


@pytest.fixture
def repo() -> str:
    return f"images/r{next(_repos)}"


def fresh_repo() -> str:
    return f"images/h{next(_repos)}"


@functools.cache
def api(ecr: LocalECR) -> ECRClient:
    """One plain botocore client per endpoint: making one costs more than a request."""
    return ecr.botocore_client()


def get(ecr: LocalECR, repository: str, *image_ids: dict[str, str], **extra: Any) -> Any:
    # Any shape of imageId, the malformed ones included: the server's answer is the test.
    ids: list[Any] = list(image_ids)
    return api(ecr).batch_get_image(repositoryName=repository, imageIds=ids, **extra)


def blob(ecr: LocalECR, repository: str, digest: str) -> bytes:
    """Download *digest* as a client does: a URL from the API, then a plain GET."""
    url = api(ecr).get_download_url_for_layer(repositoryName=repository, layerDigest=digest)[
        "downloadUrl"
    ]
    response = HTTP.request("GET", url)
    assert response.status == 200
    assert digest_of(response.data) == digest
    return response.data


def tar_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()


def config_of(ecr: LocalECR, repository: str, manifest: Mapping[str, Any]) -> Any:
    return json.loads(blob(ecr, repository, manifest["config"]["digest"]))


def put(ecr: LocalECR, repository: str, manifest: str, **extra: Any) -> Any:
    ecr.create_repository(repository)
    return api(ecr).put_image(repositoryName=repository, imageManifest=manifest, **extra)


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# -- layers ---------------------------------------------------------------------------

names = st.lists(
    st.text(st.sampled_from("abcXYZ019._-é"), min_size=1, max_size=40).filter(
        lambda s: s not in (".", "..")
    ),
    min_size=1,
    max_size=4,
).map("/".join)


@given(st.dictionaries(names, st.binary(max_size=2000), max_size=5))
def test_tar_layer_is_a_deterministic_gzipped_tar_of_the_files(files: dict[str, bytes]) -> None:
    layer = tar_layer(files)
    again = tar_layer(dict(reversed(list(files.items()))))
    assert again.data == layer.data
    assert layer.digest == digest_of(layer.data)
    assert layer.diff_id == tar_digest(layer.data)
    assert layer.files == tuple(sorted(files))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == sorted(files)
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, "")
            extracted = archive.extractfile(member)
            assert extracted is not None
            assert extracted.read() == files[member.name]


@given(st.dictionaries(names, st.binary(max_size=700), max_size=4))
def test_tar_layer_is_what_tarfile_writes_without_time_or_owner(files: dict[str, bytes]) -> None:
    written = io.BytesIO()
    with tarfile.open(fileobj=written, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(name)  # mtime 0, owner 0:0 by default
            info.size, info.mode = len(files[name]), 0o644
            archive.addfile(info, io.BytesIO(files[name]))
    layer = tar_layer(files)
    tar = gzip.decompress(layer.data)
    # tarfile pads the archive to a 10 KiB record; the layer stops at the end blocks.
    assert written.getvalue().startswith(tar)
    assert not written.getvalue()[len(tar) :].strip(b"\0")
    # gzip's header: no modification time, OS "unknown", whichever machine built it.
    assert layer.data[4:8] == bytes(4)
    assert layer.data[9] == 255


def test_tar_layer_depends_on_contents_and_names_only() -> None:
    first = tar_layer({"a": b"1", "b": b"2"})
    assert first == tar_layer({"b": b"2", "a": b"1"})
    assert first.digest != tar_layer({"a": b"1", "b": b"3"}).digest
    assert first.digest != tar_layer({"a": b"1", "c": b"2"}).digest
    assert "data" not in repr(first)
    assert first.digest in repr(first)


@pytest.mark.parametrize("name", ["", "dir/"])
def test_tar_layer_refuses_names_that_are_not_files(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        tar_layer({name: b"x"})


@given(st.integers(min_value=1561, max_value=300_000), st.integers(0, 2**32))
def test_random_layer_is_exactly_the_size_asked(size: int, seed: int) -> None:
    layer = random_layer(size, seed=seed, name="data/blob")
    assert layer.size == len(layer.data) == size
    assert layer.digest == digest_of(layer.data)
    assert layer.diff_id == tar_digest(layer.data)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as archive:
        [member] = archive.getmembers()
    assert member.name == "data/blob"
    assert layer.files == ("data/blob",)
    # Nearly all of it is the file: random bytes, nothing that compresses.
    assert member.size > size - 4096


@given(st.integers(min_value=0, max_value=1561))
def test_random_layer_below_the_smallest_archive_gives_the_next_size_up(size: int) -> None:
    layer = random_layer(size)
    assert size <= layer.size <= max(size, 1559) + 2
    assert layer.diff_id == tar_digest(layer.data)


def test_random_layer_is_seeded_and_exact_at_benchmark_sizes() -> None:
    assert random_layer(5000, seed=7) == random_layer(5000, seed=7)
    assert random_layer(5000, seed=7).digest != random_layer(5000, seed=8).digest
    assert random_layer(5000).digest != random_layer(5000).digest
    big = random_layer(8 * 1024 * 1024)
    assert big.size == 8 * 1024 * 1024
    assert big.diff_id == tar_digest(big.data)
    with pytest.raises(ValueError, match="negative"):
        random_layer(-1)


# -- platforms ------------------------------------------------------------------------

part = st.text(st.sampled_from("abcdefgh0123456789_.-"), min_size=1, max_size=10)


@given(part, part, st.none() | part)
def test_platforms_parse_back_to_what_was_written(os: str, arch: str, variant: str | None) -> None:
    text = "/".join(filter(None, (os, arch, variant)))
    platform = Platform.parse(text)
    assert (platform.os, platform.architecture, platform.variant) == (os, arch, variant)
    assert str(platform) == text


@given(st.text(max_size=30))
def test_anything_else_is_not_a_platform(text: str) -> None:
    parts = text.split("/")
    valid = 2 <= len(parts) <= 3 and all(p and not re.search(r"\s", p) for p in parts)
    if valid:
        assert str(Platform.parse(text)) == text
    else:
        with pytest.raises(ValueError, match="platform"):
            Platform.parse(text)


# -- configs name real diff_ids ------------------------------------------------------


def test_layers_pushed_as_layer_objects_are_named_by_their_diff_ids(
    ecr: LocalECR, repo: str
) -> None:
    layers = [tar_layer({"a": b"1"}), random_layer(10_000, seed=1)]
    digests = ecr.push_image(repo, layers, tag="v1")
    assert digests == [layer.digest for layer in layers]
    [image] = get(ecr, repo, {"imageTag": "v1"})["images"]
    manifest = json.loads(image["imageManifest"])
    config = config_of(ecr, repo, manifest)
    assert config["rootfs"]["diff_ids"] == [tar_digest(blob(ecr, repo, d)) for d in digests]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_raw_bytes_are_named_by_the_tar_inside_or_by_their_own_digest(
    ecr: LocalECR, repo: str
) -> None:
    gzipped_tar = tar_layer({"f": b"x"}).data
    raw = b"not a tar"
    not_a_tar = gzip.compress(b"gzip, but no tar inside")
    digests = ecr.push_image(repo, [gzipped_tar, raw, not_a_tar], tag="v1")
    [image] = get(ecr, repo, {"imageTag": "v1"})["images"]
    config = config_of(ecr, repo, json.loads(image["imageManifest"]))
    assert config["rootfs"]["diff_ids"] == [tar_digest(gzipped_tar), digests[1], digests[2]]


def test_the_upload_api_pushes_the_same_real_image(ecr: LocalECR, repo: str) -> None:
    layers = [tar_layer({"one": b"1"}), tar_layer({"two": b"2"})]
    digests = push_image_via_api(api(ecr), repo, layers, tag="v1")
    [image] = get(ecr, repo, {"imageTag": "v1"})["images"]
    assert image["imageManifestMediaType"] == OCI_MANIFEST
    config = config_of(ecr, repo, json.loads(image["imageManifest"]))
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in layers]
    assert digests == [layer.digest for layer in layers]


# -- PutImage -------------------------------------------------------------------------


def manifest_text(ecr: LocalECR, repo: str, media_type: str | None = OCI_MANIFEST) -> str:
    """An image manifest whose blobs are in *repo*, with *media_type* (None: no field)."""
    layer = tar_layer({"f": repo.encode()})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    ecr.add_layer(repo, layer.data)
    ecr.add_layer(repo, config)
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}],
    }
    if media_type is not None:
        document = {"mediaType": media_type, **document}
    return json.dumps(document)


@given(
    indent=st.none() | st.integers(0, 4),
    ensure_ascii=st.booleans(),
    note=st.text(max_size=20),
)
def test_manifest_bytes_are_served_exactly_as_put(
    ecr: LocalECR, indent: int | None, ensure_ascii: bool, note: str
) -> None:
    repo = fresh_repo()
    document = json.loads(manifest_text(ecr, repo))
    document["annotations"] = {"note": note}
    text = json.dumps(document, indent=indent, ensure_ascii=ensure_ascii) + "\n"
    pushed = put(ecr, repo, text, imageTag="v1")["image"]
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert pushed["imageId"]["imageDigest"] == digest
    for image_id in ({"imageTag": "v1"}, {"imageDigest": digest}):
        [image] = get(ecr, repo, image_id)["images"]
        assert image["imageManifest"] == text
        assert image["imageManifestMediaType"] == OCI_MANIFEST
        assert image["imageId"] == {"imageDigest": digest, **image_id}


def test_the_media_type_comes_from_the_request_or_else_the_document(
    ecr: LocalECR, repo: str
) -> None:
    bare = manifest_text(ecr, repo, media_type=None)
    with pytest.raises(ClientError) as refused:
        put(ecr, repo, bare)
    assert error_code(refused) == "InvalidParameterException"
    stored = put(ecr, repo, bare, imageManifestMediaType=OCI_MANIFEST, imageTag="bare")
    assert stored["image"]["imageManifestMediaType"] == OCI_MANIFEST
    [image] = get(ecr, repo, {"imageTag": "bare"})["images"]
    assert image["imageManifestMediaType"] == OCI_MANIFEST

    docker = manifest_text(ecr, repo, media_type=DOCKER_MANIFEST)
    stored = put(ecr, repo, docker, imageTag="docker")
    assert stored["image"]["imageManifestMediaType"] == DOCKER_MANIFEST


@pytest.mark.parametrize(
    ("text", "extra"),
    [
        ("not json", {}),
        ("[1, 2]", {}),
        (json.dumps({"schemaVersion": 2, "mediaType": 5}), {}),
        (json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}), {}),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}), {}),
        (
            json.dumps({"mediaType": OCI_MANIFEST, "config": {"digest": 5}, "layers": []}),
            {},
        ),
        (json.dumps({"mediaType": OCI_INDEX, "manifests": [{"digest": "x"}]}), {}),
        (
            json.dumps({"mediaType": OCI_INDEX, "manifests": []}),
            {"imageManifestMediaType": DOCKER_LIST},
        ),
        (json.dumps({"mediaType": OCI_INDEX, "manifests": []}), {"imageTag": "no spaces"}),
    ],
)
def test_put_image_refuses_what_ecr_refuses(
    ecr: LocalECR, repo: str, text: str, extra: dict[str, str]
) -> None:
    with pytest.raises(ClientError) as refused:
        put(ecr, repo, text, **extra)
    assert error_code(refused) == "InvalidParameterException"


def test_put_image_checks_a_given_digest(ecr: LocalECR, repo: str) -> None:
    text = manifest_text(ecr, repo)
    with pytest.raises(ClientError) as refused:
        put(ecr, repo, text, imageDigest=NO_SUCH_DIGEST)
    assert error_code(refused) == "ImageDigestDoesNotMatchException"
    assert get(ecr, repo, {"imageDigest": digest_of(text.encode())})["images"] == []
    stored = put(ecr, repo, text, imageDigest=digest_of(text.encode()))
    assert stored["image"]["imageId"]["imageDigest"] == digest_of(text.encode())


def test_an_image_manifest_needs_its_blobs(ecr: LocalECR, repo: str) -> None:
    document = json.loads(manifest_text(ecr, repo))
    document["layers"][0]["digest"] = NO_SUCH_DIGEST
    with pytest.raises(ClientError) as refused:
        put(ecr, repo, json.dumps(document))
    assert error_code(refused) == "LayersNotFoundException"


@pytest.mark.parametrize(
    ("index_type", "manifest_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)]
)
def test_an_index_needs_every_manifest_it_names(
    ecr: LocalECR, repo: str, index_type: str, manifest_type: str
) -> None:
    text = manifest_text(ecr, repo, manifest_type)
    entry = {"mediaType": manifest_type, "digest": digest_of(text.encode()), "size": len(text)}
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": [entry]})
    with pytest.raises(ClientError) as refused:
        put(ecr, repo, index, imageTag="multi")
    assert error_code(refused) == "ReferencedImagesNotFoundException"
    assert get(ecr, repo, {"imageTag": "multi"})["failures"][0]["failureCode"] == "ImageNotFound"

    put(ecr, repo, text)
    put(ecr, repo, index, imageTag="multi")
    [image] = get(ecr, repo, {"imageTag": "multi"})["images"]
    assert (image["imageManifest"], image["imageManifestMediaType"]) == (index, index_type)


def test_schema_1_manifests_are_stored_as_given(ecr: LocalECR, repo: str) -> None:
    signed = json.dumps(
        {
            "schemaVersion": 1,
            "name": repo,
            "tag": "old",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": NO_SUCH_DIGEST}],
            "history": [{"v1Compatibility": "{}"}],
            "signatures": [{"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "e30"}],
        },
        indent=3,
    )
    put(ecr, repo, signed, imageTag="old")
    [image] = get(ecr, repo, {"imageTag": "old"})["images"]
    assert (image["imageManifest"], image["imageManifestMediaType"]) == (signed, SCHEMA1)


# -- BatchGetImage --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged(ecr: LocalECR) -> tuple[str, str, str]:
    """A repository with tags "v1" and "v2" on two manifests; returns it and their digests."""
    repository = fresh_repo()
    v1 = ecr.push_layers_image(repository, "v1", [tar_layer({"v": b"1"})]).digest
    v2 = ecr.push_layers_image(repository, "v2", [tar_layer({"v": b"2"})]).digest
    return repository, v1, v2


def test_batch_get_image_answers_each_failure_code(
    ecr: LocalECR, tagged: tuple[str, str, str]
) -> None:
    repository, v1, v2 = tagged
    asked: list[dict[str, str]] = [
        {},
        {"imageDigest": "sha256:not-hex"},
        {"imageTag": "no/slashes"},
        {"imageTag": "t" * 301},
        {"imageTag": "missing"},
        {"imageDigest": NO_SUCH_DIGEST},
        {"imageTag": "v1", "imageDigest": v2},
        {"imageTag": "v1", "imageDigest": v1},
        {"imageDigest": v2},
    ]
    answer = get(ecr, repository, *asked)
    codes = [(f["imageId"], f["failureCode"]) for f in answer["failures"]]
    assert codes == [
        ({}, "MissingDigestAndTag"),
        (asked[1], "InvalidImageDigest"),
        (asked[2], "InvalidImageTag"),
        (asked[3], "InvalidImageTag"),
        (asked[4], "ImageNotFound"),
        (asked[5], "ImageNotFound"),
        (asked[6], "ImageTagDoesNotMatchDigest"),
    ]
    assert all(f["failureReason"] for f in answer["failures"])
    assert [image["imageId"] for image in answer["images"]] == [asked[7], asked[8]]


@given(
    tag=st.none() | st.text(max_size=12) | st.sampled_from(["v1", "v2"]),
    digest=st.none()
    | st.text(max_size=12)
    | st.from_regex(DOCUMENTED_DIGEST, fullmatch=True)
    | st.sampled_from(["v1", "v2"]),
)
def test_batch_get_image_resolves_as_documented(
    ecr: LocalECR, tagged: tuple[str, str, str], tag: str | None, digest: str | None
) -> None:
    repository, v1, v2 = tagged
    stored = {"v1": v1, "v2": v2}
    digest = stored.get(digest, digest) if digest is not None else None
    image_id = {k: v for k, v in (("imageTag", tag), ("imageDigest", digest)) if v is not None}
    if tag == "":
        return  # botocore refuses a tag shorter than the model's minimum before sending it
    answer = get(ecr, repository, image_id)
    # The oracle: the documented rules, in the order the request's mistakes come first.
    if not image_id:
        expected: str | None = "MissingDigestAndTag"
    elif digest is not None and not re.fullmatch(DOCUMENTED_DIGEST, digest):
        expected = "InvalidImageDigest"
    elif tag is not None and not re.fullmatch(ECR_TAG, tag):
        expected = "InvalidImageTag"
    elif (stored.get(tag) if tag is not None else digest) not in (v1, v2):
        expected = "ImageNotFound"
    elif tag is not None and digest is not None and stored[tag] != digest:
        expected = "ImageTagDoesNotMatchDigest"
    else:
        expected = None
    if expected is None:
        [image] = answer["images"]
        assert image["imageId"]["imageDigest"] == (stored[tag] if tag is not None else digest)
        assert answer["failures"] == []
    else:
        assert [f["failureCode"] for f in answer["failures"]] == [expected]
        assert answer["failures"][0]["imageId"] == image_id
        assert answer["images"] == []


def test_accepted_media_types_do_not_change_what_is_served(ecr: LocalECR, repo: str) -> None:
    image = ecr.push_platform_image(repo, "multi")
    for image_id in ({"imageTag": "multi"}, {"imageDigest": image.digest}):
        for accepted in ([DOCKER_MANIFEST], [OCI_MANIFEST], [OCI_INDEX, DOCKER_LIST]):
            answer = get(ecr, repo, image_id, acceptedMediaTypes=accepted)
            assert answer["failures"] == []
            [served] = answer["images"]
            assert served["imageManifestMediaType"] == OCI_INDEX
            assert digest_of(served["imageManifest"].encode()) == image.digest


def test_a_manifest_is_not_a_layer(ecr: LocalECR, repo: str) -> None:
    image = ecr.push_platform_image(repo, "multi")
    client = api(ecr)
    for digest in (image.digest, image.manifests["linux/amd64"].digest):
        with pytest.raises(client.exceptions.LayersNotFoundException):
            client.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)


# -- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", image_failure_codes())
def test_fail_next_images_fails_every_image_asked_for(
    ecr: LocalECR, tagged: tuple[str, str, str], code: str
) -> None:
    repository, v1, _ = tagged
    asked = [{"imageTag": "v1"}, {"imageDigest": v1}, {"imageTag": "missing"}]
    before = ecr.stats.faults("fail_image")
    ecr.faults.fail_next_images(code)
    with pytest.raises(ClientError):  # a refused call leaves the fault in place
        get(ecr, "images/no-such-repository", *asked)
    answer = get(ecr, repository, *asked)
    assert answer["images"] == []
    assert [(f["imageId"], f["failureCode"]) for f in answer["failures"]] == [
        (image_id, code) for image_id in asked
    ]
    assert {f["failureReason"] for f in answer["failures"]} == {"Injected failure"}
    assert ecr.stats.faults("fail_image") == before + 1
    assert len(get(ecr, repository, *asked)["images"]) == 2


def test_fail_next_images_counts_and_reasons(ecr: LocalECR, tagged: tuple[str, str, str]) -> None:
    repository = tagged[0]
    assert {"KmsError", "UpstreamTooManyRequests", "ImageInaccessible"} <= set(
        image_failure_codes()
    )
    ecr.faults.fail_next_images("KmsError", 2, reason="key disabled")
    for _ in range(2):
        [failure] = get(ecr, repository, {"imageTag": "v1"})["failures"]
        assert (failure["failureCode"], failure["failureReason"]) == ("KmsError", "key disabled")
    assert get(ecr, repository, {"imageTag": "v1"})["failures"] == []
    with pytest.raises(ValueError, match="failure code"):
        ecr.faults.fail_next_images("NoSuchCode")
    ecr.faults.fail_next_images("ImageInaccessible")
    ecr.faults.clear()
    assert get(ecr, repository, {"imageTag": "v1"})["failures"] == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("LimitExceededException", 400),
        ("UnableToGetUpstreamImageException", 400),
        ("ServerException", 500),
    ],
)
def test_fail_next_gives_batch_get_images_modeled_errors(
    ecr: LocalECR, tagged: tuple[str, str, str], code: str, status: int
) -> None:
    client = api(ecr)
    ecr.faults.fail_next("BatchGetImage", code=code, status=status)
    with pytest.raises(getattr(client.exceptions, code)) as raised:
        client.batch_get_image(repositoryName=tagged[0], imageIds=[{"imageTag": "v1"}])
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert client.batch_get_image(repositoryName=tagged[0], imageIds=[{"imageTag": "v1"}])["images"]


# -- multi-platform images ------------------------------------------------------------


def check_platform_manifest(
    ecr: LocalECR, image: SeededImage, platform: str, types: tuple[str, str, str]
) -> None:
    """The platform's manifest is stored, names its config and layers, and they download."""
    manifest_type, config_type, layer_type = types
    seeded = image.manifests[platform]
    [served] = get(ecr, image.repository_name, {"imageDigest": seeded.digest})["images"]
    assert served["imageManifestMediaType"] == seeded.media_type == manifest_type
    manifest = json.loads(served["imageManifest"])
    assert manifest["config"]["mediaType"] == config_type
    assert manifest["config"]["digest"] == seeded.config_digest
    assert [(d["mediaType"], d["digest"]) for d in manifest["layers"]] == [
        (layer_type, layer.digest) for layer in seeded.layers
    ]
    config = config_of(ecr, image.repository_name, manifest)
    assert Platform(config["os"], config["architecture"], config.get("variant")) == Platform.parse(
        platform
    )
    downloaded = [blob(ecr, image.repository_name, layer.digest) for layer in seeded.layers]
    assert config["rootfs"]["diff_ids"] == [tar_digest(data) for data in downloaded]


def test_an_oci_image_for_two_platforms_with_an_attestation(ecr: LocalECR, repo: str) -> None:
    image = ecr.push_platform_image(repo, "v1")
    assert (image.repository_name, image.tag, image.media_type) == (repo, "v1", OCI_INDEX)
    [served] = get(ecr, repo, {"imageTag": "v1"})["images"]
    assert (
        served["imageId"]["imageDigest"]
        == image.digest
        == digest_of(served["imageManifest"].encode())
    )
    index = json.loads(served["imageManifest"])
    assert index["mediaType"] == OCI_INDEX
    amd64, arm64, attestation = index["manifests"]
    assert amd64["platform"] == {"os": "linux", "architecture": "amd64"}
    assert arm64["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert [amd64["digest"], arm64["digest"]] == [m.digest for m in image.manifests.values()]
    for platform in ("linux/amd64", "linux/arm64/v8"):
        check_platform_manifest(ecr, image, platform, (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER))
    # The default layers: a base shared by both platforms, then one of each's own.
    (amd64_base, amd64_own), (arm64_base, arm64_own) = (m.layers for m in image.manifests.values())
    assert amd64_base == arm64_base
    assert amd64_own != arm64_own
    assert all(len(layer.files) >= 2 for layer in (amd64_base, amd64_own, arm64_own))

    assert attestation["platform"] == {"os": "unknown", "architecture": "unknown"}
    assert attestation["annotations"] == {
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": amd64["digest"],
    }
    assert attestation["digest"] == image.attestation_digest
    [stored] = get(ecr, repo, {"imageDigest": attestation["digest"]})["images"]
    assert stored["imageManifestMediaType"] == OCI_MANIFEST
    [statement_layer] = json.loads(stored["imageManifest"])["layers"]
    assert statement_layer["mediaType"] == IN_TOTO
    statement = json.loads(blob(ecr, repo, statement_layer["digest"]))
    assert statement["subject"][0]["digest"] == {"sha256": amd64["digest"].split(":")[1]}


def test_a_docker_manifest_list(ecr: LocalECR, repo: str) -> None:
    image = ecr.push_platform_image(
        repo, "v1", platforms=("linux/amd64", "linux/arm/v7", "windows/amd64"), kind="docker"
    )
    assert image.media_type == DOCKER_LIST
    assert image.attestation_digest is None
    [served] = get(ecr, repo, {"imageTag": "v1"})["images"]
    assert served["imageManifestMediaType"] == DOCKER_LIST
    entries = json.loads(served["imageManifest"])["manifests"]
    assert [e["platform"] for e in entries] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "windows", "architecture": "amd64"},
    ]
    assert {e["mediaType"] for e in entries} == {DOCKER_MANIFEST}
    for platform in image.manifests:
        check_platform_manifest(
            ecr, image, platform, (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        )


def test_chosen_layers_per_platform(ecr: LocalECR, repo: str) -> None:
    mine = (tar_layer({"x": b"1"}), tar_layer({"y": b"2"}), tar_layer({"z": b"3"}))
    image = ecr.push_platform_image(repo, "v1", layers={"linux/arm64/v8": mine}, attestation=False)
    assert image.attestation_digest is None
    assert image.manifests["linux/arm64/v8"].layers == mine
    assert len(image.manifests["linux/amd64"].layers) == 2
    check_platform_manifest(ecr, image, "linux/arm64/v8", (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER))
    [served] = get(ecr, repo, {"imageTag": "v1"})["images"]
    assert len(json.loads(served["imageManifest"])["manifests"]) == 2
    with pytest.raises(TypeError):
        image.manifests["linux/amd64"] = image.manifests["linux/arm64/v8"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("platforms", "layers"),
    [
        ((), None),
        (("linux/amd64", "linux/amd64"), None),
        (("linux",), None),
        (("linux/amd64",), {"linux/arm64": [tar_layer({"a": b""})]}),
    ],
)
def test_push_platform_image_refuses_before_storing(
    ecr: LocalECR, repo: str, platforms: tuple[str, ...], layers: dict[str, list[Layer]] | None
) -> None:
    with pytest.raises(ValueError, match="platform"):
        ecr.push_platform_image(repo, "v1", platforms=platforms, layers=layers)
    with pytest.raises(ClientError):  # not even the repository
        get(ecr, repo, {"imageTag": "v1"})


def test_seeding_refuses_a_tag_or_layers_ecr_would_not_take(ecr: LocalECR, repo: str) -> None:
    good = tar_layer({"a": b"a"})
    with pytest.raises(ValueError, match="tags"):
        ecr.push_platform_image(repo, "no spaces")
    with pytest.raises(ValueError, match="tags"):
        ecr.push_layers_image(repo, "t" * 301, [good])
    with pytest.raises(ValueError, match="tags"):
        ecr.push_image(repo, [b"raw"], tag="a:b")
    with pytest.raises(TypeError, match="Layer"):
        ecr.push_platform_image(
            repo,
            "v1",
            layers={"linux/amd64": [good], "linux/arm64/v8": [b"raw"]},  # type: ignore[list-item]
        )
    with pytest.raises(ClientError):  # nothing was stored, not even the repository
        get(ecr, repo, {"imageTag": "v1"})


def test_two_tags_sharing_layers(ecr: LocalECR, repo: str) -> None:
    shared = random_layer(100_000, seed=3)
    one = ecr.push_layers_image(repo, "one", [shared, tar_layer({"one": b"1"})])
    two = ecr.push_layers_image(repo, "two", [shared, tar_layer({"two": b"2"})], kind="docker")
    untagged = ecr.push_layers_image(repo, None, [shared], platform="linux/arm64/v8")
    assert one.layers[0].digest == two.layers[0].digest
    assert (one.media_type, two.media_type) == (OCI_MANIFEST, DOCKER_MANIFEST)
    answer = get(
        ecr, repo, {"imageTag": "one"}, {"imageTag": "two"}, {"imageDigest": untagged.digest}
    )
    assert [i["imageId"]["imageDigest"] for i in answer["images"]] == [
        one.digest,
        two.digest,
        untagged.digest,
    ]
    assert blob(ecr, repo, shared.digest) == shared.data
    for seeded in (one, two, untagged):
        assert json.loads(blob(ecr, repo, seeded.config_digest))["rootfs"]["diff_ids"] == [
            layer.diff_id for layer in seeded.layers
        ]
    with pytest.raises(TypeError, match="Layer"):
        ecr.push_layers_image(repo, "raw", [b"raw bytes"])  # type: ignore[list-item]


def test_layers_download_through_the_library(ecr: LocalECR, repo: str) -> None:
    seeded = ecr.push_layers_image(repo, "v1", [random_layer(300_000), tar_layer({"a": b"b"})])
    client = ecr.client()
    for layer in seeded.layers:
        assert client.get_layer_url(repo, layer.digest).layer_digest == layer.digest
    assert client.get_layer_url(repo, seeded.config_digest).layer_digest == seeded.config_digest


def test_the_demo_image() -> None:
    ecr = LocalECR()
    image = ecr.seed_demo_image()  # before serving
    with ecr:
        assert (image.repository_name, image.tag) == ("demo/app", "v1")
        assert list(image.manifests) == ["linux/amd64", "linux/arm64/v8"]
        amd64, arm64 = image.manifests.values()
        assert [layer.size for layer in amd64.layers] == [64 * 1024, 1024 * 1024, 8 * 1024 * 1024]
        assert amd64.layers[0] == arm64.layers[0]
        assert amd64.layers[1:] != arm64.layers[1:]
        assert image.attestation_digest is not None
        repository, digests = ecr.seed_demo()
        assert repository == "demo/app"
        again = json.loads(get(ecr, repository, {"imageTag": "v1"})["images"][0]["imageManifest"])
        [new_amd64] = [m for m in again["manifests"] if m["platform"]["architecture"] == "amd64"]
        [manifest] = get(ecr, repository, {"imageDigest": new_amd64["digest"]})["images"]
        assert [d["digest"] for d in json.loads(manifest["imageManifest"])["layers"]] == digests
