"""Images under attack: hostile hosts, answers and layouts (each found in a review, fixed, kept)."""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from botocore.stub import Stubber

import ecr_layers
from ecr_layers import _transfer
from ecr_layers.testing import LocalECR, tar_layer

from . import hostile
from .imaging import FAST, REPO, sha256
from .test_bounds import point_at

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient


# -- open_layer on hostile hosts ------------------------------------------------------


def test_a_stream_cut_for_being_too_slow_resumes_on_a_new_connection(
    client: ecr_layers.LayerClient, monkeypatch: pytest.MonkeyPatch
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
        point_at(monkeypatch, host)
        with client.open_layer(REPO, host.digest) as stream:
            assert stream.read() == host.data
        assert host.requests == 2


def test_a_host_that_ignores_range_and_then_resets_gives_a_typed_error(
    client: ecr_layers.LayerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = hostile.reset_after(600_000)
    short = hostile.reset_after(1000)

    def behave(conn: Any, data: bytes, host: hostile.Host) -> None:
        (cut if host.requests == 1 else short)(conn, data, host)

    with hostile.serving(behave) as host:
        point_at(monkeypatch, host)
        with (
            pytest.raises(ecr_layers.EndpointUnreachable) as caught,
            client.open_layer(REPO, host.digest) as stream,
        ):
            stream.read()
        assert host.requests <= FAST.attempts + 1
    assert caught.value.layer_digest == host.digest


# -- hostile BatchGetImage answers ----------------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[ecr_layers.LayerClient, Stubber]]:
    ecr: ECRClient = botocore.session.get_session().create_client(  # type: ignore[assignment]
        "ecr", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    with Stubber(ecr) as stubber:
        yield ecr_layers.LayerClient(ecr, retry_policy=ecr_layers.RetryPolicy(attempts=1)), stubber


def test_deeply_nested_json_is_an_invalid_response(
    stubbed: tuple[ecr_layers.LayerClient, Stubber],
) -> None:
    client, stubber = stubbed
    deep = '{"schemaVersion": 2, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    image = {"imageId": {"imageDigest": sha256(deep.encode())}, "imageManifest": deep}
    stubber.add_response("batch_get_image", {"images": [image], "failures": []})
    with pytest.raises(ecr_layers.InvalidResponse):
        client.get_image(REPO, "v1")


def test_malformed_answers_are_invalid_responses(
    stubbed: tuple[ecr_layers.LayerClient, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = stubbed
    # Shapes botocore's Stubber would refuse to send: patched in as the answer itself.
    for body in ({"failures": ["x"]}, {"images": ["abc"]}, {"images": [{"imageId": "x"}]}):
        monkeypatch.setattr(client.ecr, "batch_get_image", lambda body=body, **_: body)
        with pytest.raises(ecr_layers.InvalidResponse):
            client.get_image(REPO, "v1")


@pytest.mark.parametrize("size", [10**30, -1, True, 1.5])
def test_impossible_sizes_are_refused(
    stubbed: tuple[ecr_layers.LayerClient, Stubber], size: object
) -> None:
    client, stubber = stubbed
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": "sha256:" + "c" * 64, "size": size},
            "layers": [],
        }
    )
    image = {"imageId": {"imageDigest": sha256(manifest.encode())}, "imageManifest": manifest}
    stubber.add_response("batch_get_image", {"images": [image], "failures": []})
    with pytest.raises(ecr_layers.InvalidResponse):
        client.get_image(REPO, "v1")


def test_a_platform_name_with_control_characters_is_never_offered(
    stubbed: tuple[ecr_layers.LayerClient, Stubber],
) -> None:
    client, stubber = stubbed
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
    image = {"imageId": {"imageDigest": sha256(index.encode())}, "imageManifest": index}
    stubber.add_response("batch_get_image", {"images": [image], "failures": []})
    with pytest.raises(ecr_layers.PlatformNotFound) as caught:
        client.get_image(REPO, "v1", platform="linux/amd64")
    assert caught.value.platforms == ()
    assert "\x1b" not in str(caught.value)


# -- pull_image against a lying manifest and a hostile layout ---------------------------


@pytest.mark.parametrize(
    "case", [(-1, ecr_layers.BlobTooLarge), (+1, ecr_layers.InvalidResponse)], ids=str
)
def test_a_manifest_that_lies_about_a_blobs_size_is_refused(
    ecr: LocalECR,
    client: ecr_layers.LayerClient,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[int, type[ecr_layers.ECRError]],
) -> None:
    from ecr_layers._images import _Served

    change, error = case
    layer = tar_layer({"a.txt": b"a" * 100})
    ecr.push_layers_image(REPO, "v1", [layer])
    image = client.get_image(REPO, "v1")
    document = json.loads(image.manifest_bytes)
    document["layers"][0]["size"] += change
    lying = json.dumps(document).encode()
    # Served as if ECR stored it so: the digest of the lying bytes, which verify.
    served = _Served(lying, image.media_type, sha256(lying))
    monkeypatch.setattr(ecr_layers._images, "_batch_get", lambda *_args: served)
    # Smaller than the body: refused before reading past the size; larger: refused once
    # the whole (verified) body shows the manifest wrong.
    with pytest.raises(error) as caught:
        client.pull_image(REPO, "v1", tmp_path / "layout")
    assert "bytes" in caught.value.message
    assert not (tmp_path / "layout" / "index.json").exists()
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    assert not (blobs / layer.digest.split(":")[1]).exists()


def test_an_index_json_that_is_not_a_regular_file_is_refused_at_once(
    ecr: LocalECR, client: ecr_layers.LayerClient, tmp_path: pathlib.Path
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
            client.pull_image(REPO, "v1", layout)
        assert time.monotonic() - started < 5
    assert ecr.stats.count() == 0


def test_links_inside_the_layout_are_refused(
    ecr: LocalECR, client: ecr_layers.LayerClient, tmp_path: pathlib.Path
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
            client.pull_image(REPO, "v1", layout)
    assert bait.read_text() == "mine"
    assert sorted(p.name for p in elsewhere.iterdir()) == [bait.name]
    # A planted lock-file link is not followed either.
    layout = tmp_path / "layout-lock"
    layout.mkdir()
    (layout / ".ecr-layers.lock").symlink_to(elsewhere / "created")
    with pytest.raises(ecr_layers.DestinationError):
        client.pull_image(REPO, "v1", layout)
    assert not (elsewhere / "created").exists()
