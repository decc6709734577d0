"""Images under attack: hostile hosts, answers and layouts (each found in a review, fixed, kept)."""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import pytest

import ecr_layers
from ecr_layers import _transfer
from ecr_layers.testing import LocalECR, tar_layer

from . import hostile
from .imaging import FAST, REPO, Synchronous, image_answer, serve_images, sha256

# -- open_layer on hostile hosts ------------------------------------------------------


def test_a_stream_cut_for_being_too_slow_resumes_on_a_new_connection(
    either: Synchronous, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transfer, "MIN_RATE_WINDOW", 0.3)
    first = hostile.trickle(0.05)

    def slow_then_fine(conn: Any, data: bytes, host: hostile.Host) -> None:
        if host.requests == 1:
            first(conn, data, host)
        else:
            # Honours Range, at full speed.
            start = int((host.ranges[-1] or "bytes=0-").split("=")[1].split("-")[0])
            body = data[start:]
            head = (
                f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
                f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n\r\n"
            )
            conn.sendall(head.encode() + body)

    with hostile.serving(slow_then_fine) as host:
        hostile.point_at(monkeypatch, host)
        with either.open_layer(REPO, host.digest) as stream:
            assert stream.read() == host.data
        assert host.requests == 2


def test_a_host_that_ignores_range_and_then_resets_gives_a_typed_error(
    either: Synchronous, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = hostile.reset_after(600_000)
    short = hostile.reset_after(1000)

    def behave(conn: Any, data: bytes, host: hostile.Host) -> None:
        (cut if host.requests == 1 else short)(conn, data, host)

    with hostile.serving(behave) as host:
        hostile.point_at(monkeypatch, host)
        with (
            pytest.raises(ecr_layers.EndpointUnreachable) as caught,
            either.open_layer(REPO, host.digest) as stream,
        ):
            stream.read()
        assert host.requests <= FAST.attempts + 1
    assert caught.value.layer_digest == host.digest


# -- hostile BatchGetImage answers, sent over HTTP ---------------------------------------


@pytest.mark.usefixtures("no_collection_at_the_recursion_limit")
def test_deeply_nested_json_is_an_invalid_response(ecr: LocalECR, either: Synchronous) -> None:
    deep = '{"schemaVersion": 2, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    serve_images(ecr, image_answer(deep))
    with pytest.raises(ecr_layers.InvalidResponse):
        either.get_image(REPO, "v1")


def test_malformed_answers_are_invalid_responses(
    ecr: LocalECR, either: Synchronous, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_layers import _images

    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    real_answer = _images.answer
    # Shapes botocore's parser would not let through (see the test after): put in place
    # of what it parsed, where both clients hand the response over.
    for body in ({"failures": ["x"]}, {"images": ["abc"]}, {"images": [{"imageId": "x"}]}):
        monkeypatch.setattr(
            _images, "answer", lambda _, request, body=body: real_answer(body, request)
        )
        with pytest.raises(ecr_layers.InvalidResponse):
            either.get_image(REPO, "v1")


@pytest.mark.parametrize(
    "images",
    [
        [],
        [image_answer("{}"), image_answer("{}")],
        [{"imageId": {"imageDigest": sha256(b"{}")}}],
        [{"imageId": {"imageDigest": 5}, "imageManifest": 7}],
    ],
    ids=["none", "two", "no-manifest", "numbers"],
)
def test_malformed_answers_over_http_are_invalid_responses(
    ecr: LocalECR, either: Synchronous, images: list[dict[str, Any]]
) -> None:
    serve_images(ecr, *images)
    with pytest.raises(ecr_layers.InvalidResponse):
        either.get_image(REPO, "v1")
    assert ecr.stats.count("BatchGetImage") == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"failures": ["x"]}, ecr_layers.InvalidResponse),
        (200, {"images": ["abc"]}, ecr_layers.InvalidResponse),
        (200, {"images": [{"imageId": "x"}]}, ecr_layers.InvalidResponse),
        (400, {"__type": ["x"]}, ecr_layers.InvalidResponse),  # an error code that is a list
        (400, {"a": 1}, ecr_layers.UnknownError),  # an error with no code at all
    ],
    ids=["failure", "image", "image-id", "error-code-list", "error-without-code"],
)
def test_answers_botocore_cannot_parse_are_typed_errors(
    ecr: LocalECR, either: Synchronous, status: int, body: dict[str, Any], error: type[Exception]
) -> None:
    [digest] = ecr.push_image(REPO, [b"layer"])
    calls: list[tuple[str, Callable[[], object]]] = [
        ("BatchGetImage", lambda: either.get_image(REPO, "v1")),
        ("GetDownloadUrlForLayer", lambda: either.get_layer_url(REPO, digest)),
    ]
    for operation, call in calls:
        ecr.faults.fail_next(operation, status=status, body=json.dumps(body).encode())
        with pytest.raises(ecr_layers.ECRError) as caught:
            call()
        if status == 200 and operation == "GetDownloadUrlForLayer":
            # Parsed as an answer without a downloadUrl: the facade's own check.
            assert isinstance(caught.value, ecr_layers.InvalidResponse)
        else:
            assert type(caught.value) is error


@pytest.mark.parametrize("size", [10**30, -1, True, 1.5])
def test_impossible_sizes_are_refused(ecr: LocalECR, either: Synchronous, size: object) -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": "sha256:" + "c" * 64, "size": size},
            "layers": [],
        }
    )
    serve_images(ecr, image_answer(manifest))
    with pytest.raises(ecr_layers.InvalidResponse):
        either.get_image(REPO, "v1")


def test_a_platform_name_with_control_characters_is_never_offered(
    ecr: LocalECR, either: Synchronous
) -> None:
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "a" * 64,
                    "size": 10,
                    "platform": {"os": "linux\x1b[31m", "architecture": "amd64"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "b" * 64,
                    "size": 10,
                    "platform": {"os": "linux", "architecture": "x" * 500},
                },
            ],
        }
    )
    serve_images(ecr, image_answer(index))
    with pytest.raises(ecr_layers.PlatformNotFound) as caught:
        either.get_image(REPO, "v1", platform="linux/amd64")
    assert caught.value.platforms == ()
    assert "\x1b" not in str(caught.value)


# -- pull_image against a lying manifest and a hostile layout ---------------------------


@pytest.mark.parametrize(
    "case", [(-1, ecr_layers.BlobTooLarge), (+1, ecr_layers.InvalidResponse)], ids=str
)
def test_a_manifest_that_lies_about_a_blobs_size_is_refused(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    case: tuple[int, type[ecr_layers.ECRError]],
) -> None:
    change, error = case
    layer = tar_layer({"a.txt": b"a" * 100})
    ecr.push_layers_image(REPO, "v1", [layer])
    image = either.get_image(REPO, "v1")
    document = json.loads(image.manifest_bytes)
    document["layers"][0]["size"] += change
    # Served as if ECR stored it so: under the digest of the lying bytes, which verify.
    serve_images(ecr, image_answer(json.dumps(document), media_type=image.media_type))
    # Smaller than the body: refused before reading past the size; larger: refused once
    # the whole (verified) body shows the manifest wrong.
    with pytest.raises(error) as caught:
        either.pull_image(REPO, "v1", tmp_path / "layout")
    assert "bytes" in caught.value.message
    assert not (tmp_path / "layout" / "index.json").exists()
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    assert not (blobs / layer.digest.split(":")[1]).exists()


@pytest.mark.usefixtures("no_collection_at_the_recursion_limit")
def test_an_index_json_that_is_not_a_regular_file_is_refused_at_once(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    fifo_layout = tmp_path / "fifo"
    fifo_layout.mkdir()
    os.mkfifo(fifo_layout / "index.json")
    link_layout = tmp_path / "link"
    link_layout.mkdir()
    (link_layout / "index.json").symlink_to("/dev/zero")
    deep_layout = tmp_path / "deep"
    deep_layout.mkdir()
    (deep_layout / "index.json").write_text('{"manifests": [], "x": ' + "[" * 100_000 + "}")
    ecr.stats.reset()
    for layout in (fifo_layout, link_layout, deep_layout):
        started = time.monotonic()
        with pytest.raises(ecr_layers.DestinationError):
            either.pull_image(REPO, "v1", layout)
        assert time.monotonic() - started < 5
    assert ecr.stats.count() == 0


def test_links_inside_the_layout_are_refused(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bait = elsewhere / f"notes.{2**22 + 12345}-deadbeef.txt"
    bait.write_text("mine")
    for inside in (".ecr-layers-staging", "blobs"):
        layout = tmp_path / f"layout-{inside}"
        layout.mkdir()
        (layout / inside).symlink_to(elsewhere)
        with pytest.raises(ecr_layers.DestinationError):
            either.pull_image(REPO, "v1", layout)
    assert bait.read_text() == "mine"
    assert sorted(p.name for p in elsewhere.iterdir()) == [bait.name]
    # A planted lock-file link is not followed either.
    for lock in (".ecr-layers.lock", ".ecr-layers-staging.lock"):
        layout = tmp_path / f"layout{lock}"
        layout.mkdir()
        (layout / lock).symlink_to(elsewhere / "created")
        with pytest.raises(ecr_layers.DestinationError):
            either.pull_image(REPO, "v1", layout)
        assert not (elsewhere / "created").exists()
