"""pull_image to an OCI image layout, checked on the server side and by skopeo."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
from typing import Any

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR, random_layer, tar_layer

from .imaging import REPO, Synchronous

REF_NAME = "org.opencontainers.image.ref.name"


def skopeo_path() -> str:
    """skopeo, or a skip that says how to get it (a failure where CI requires it)."""
    found = shutil.which("skopeo")
    if found is None:
        why = "skopeo is not installed (Debian/Ubuntu: apt-get install skopeo)"
        if os.environ.get("ECR_LAYERS_REQUIRE_SKOPEO"):
            pytest.fail(f"{why}, and ECR_LAYERS_REQUIRE_SKOPEO says it must run")
        pytest.skip(why)
    return found


def skopeo_checks(layout: pathlib.Path, reference: str, image: ecr_layers.Image) -> None:
    """An independent implementation reads what pull_image wrote."""
    skopeo = skopeo_path()
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:{reference}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert inspect.returncode == 0, inspect.stderr
    seen = json.loads(inspect.stdout)
    assert seen["Digest"] == image.digest
    assert seen["Layers"] == [layer.digest for layer in image.layers]
    out = layout.parent / f"copy-{reference.replace(':', '-')}"
    copy = subprocess.run(
        [skopeo, "copy", f"oci:{layout}:{reference}", f"dir:{out}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert copy.returncode == 0, copy.stderr  # skopeo verifies every blob it copies


def staged(layout: pathlib.Path) -> list[pathlib.Path]:
    """What is left in the staging directory (removed once a pull leaves it empty)."""
    staging = layout / ".ecr-layers-staging"
    return list(staging.iterdir()) if staging.exists() else []


def check_layout(layout: pathlib.Path) -> dict[str, Any]:
    """Every blob hashes to its name; the index names only blobs that are there."""
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for blob in (layout / "blobs").rglob("*"):
        if blob.is_file():
            algorithm = blob.parent.name
            assert hashlib.new(algorithm, blob.read_bytes()).hexdigest() == blob.name
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    for entry in index["manifests"]:
        path = layout / "blobs" / entry["digest"].replace(":", "/")
        assert path.stat().st_size == entry["size"]
    return index  # type: ignore[no-any-return]


def test_a_pull_writes_a_layout_skopeo_reads(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    layers = [tar_layer({"etc/os-release": b"ID=demo\n"}), random_layer(6 * 1024 * 1024, seed=3)]
    ecr.push_layers_image(REPO, "v1", layers)
    ecr.stats.reset()
    seen: list[tuple[int, int | None]] = []
    layout = tmp_path / "layout"
    image = either.pull_image(REPO, "v1", layout, progress=lambda d, t: seen.append((d, t)))
    # One BatchGetImage, one batch of lookups (config + layers), one GET per blob.
    assert ecr.stats.count("BatchGetImage") == 1
    assert ecr.stats.count("GetDownloadUrlForLayer") == 3
    assert ecr.stats.blob_count() == 3
    assert seen[-1] == (image.total_size, image.total_size)
    index = check_layout(layout)
    [entry] = index["manifests"]
    assert entry["digest"] == image.digest
    assert entry["annotations"][REF_NAME] == "v1"
    assert (layout / "blobs/sha256" / image.digest.split(":")[1]).read_bytes() == (
        image.manifest_bytes
    )
    assert staged(layout) == []
    skopeo_checks(layout, "v1", image)


def test_a_second_pull_fetches_nothing_and_a_shared_layer_is_fetched_once(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    base, one, two = (tar_layer({f"{n}.txt": n.encode() * 100}) for n in ("base", "one", "two"))
    ecr.push_layers_image(REPO, "v1", [base, one])
    ecr.push_layers_image(REPO, "v2", [base, two])
    layout = tmp_path / "layout"
    first = either.pull_image(REPO, "v1", layout)
    ecr.stats.reset()
    assert either.pull_image(REPO, "v1", layout) == first
    assert ecr.stats.blob_count() == 0
    assert ecr.stats.count("GetDownloadUrlForLayer") == 0
    assert ecr.stats.count("BatchGetImage") == 1
    second = either.pull_image(REPO, "v2", layout)
    assert ecr.stats.blob_count(base.digest) == 0
    assert ecr.stats.blob_count(two.digest) == 1
    assert ecr.stats.blob_count(second.config.digest) == 1
    index = check_layout(layout)
    assert [e["annotations"][REF_NAME] for e in index["manifests"]] == ["v1", "v2"]
    skopeo_checks(layout, "v1", first)
    skopeo_checks(layout, "v2", second)


def test_a_damaged_blob_is_fetched_again(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    layer = tar_layer({"a.txt": b"a" * 1000})
    ecr.push_layers_image(REPO, "v1", [layer])
    layout = tmp_path / "layout"
    either.pull_image(REPO, "v1", layout)
    path = layout / "blobs/sha256" / layer.digest.split(":")[1]
    path.write_bytes(b"X" + path.read_bytes()[1:])  # same size, wrong bytes
    ecr.stats.reset()
    either.pull_image(REPO, "v1", layout)
    assert ecr.stats.blob_count(layer.digest) == 1
    assert path.read_bytes() == layer.data
    check_layout(layout)


def test_an_index_reference_names_the_chosen_platforms_manifest(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    seeded = ecr.push_platform_image(REPO, "multi", platforms=("linux/amd64", "linux/arm64/v8"))
    layout = tmp_path / "layout"
    ecr.stats.reset()
    image = either.pull_image(REPO, "multi", layout, platform="linux/arm64/v8")
    assert ecr.stats.count("BatchGetImage") == 2
    assert image.digest == seeded.manifests["linux/arm64/v8"].digest
    [entry] = check_layout(layout)["manifests"]
    assert entry["digest"] == image.digest
    assert entry["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    skopeo_checks(layout, "multi", image)


def test_a_failed_pull_leaves_the_index_as_it_was(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    layers = [random_layer(1024 * 1024, seed=n) for n in range(4)]
    ecr.push_layers_image(REPO, "v2", layers)
    layout = tmp_path / "layout"
    either.pull_image(REPO, "v1", layout)
    before = (layout / "index.json").read_bytes()
    ecr.faults.corrupt_next_blobs(1)
    with pytest.raises(ecr_layers.DigestMismatch):
        either.pull_image(REPO, "v2", layout, max_parallel=2)
    assert (layout / "index.json").read_bytes() == before
    check_layout(layout)  # whatever landed is whole and verified
    assert staged(layout) == []
    # And the next pull completes it.
    image = either.pull_image(REPO, "v2", layout)
    assert [e["annotations"][REF_NAME] for e in check_layout(layout)["manifests"]] == ["v1", "v2"]
    skopeo_checks(layout, "v2", image)


def test_pull_checks_everything_before_touching_the_disk(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.stats.reset()
    layout = tmp_path / "layout"
    for kwargs in (
        {"max_parallel": 0},
        {"max_parallel": 17},
        {"max_parallel": True},
        {"platform": "nope"},
        {"progress": 3},
    ):
        with pytest.raises(ecr_layers.InvalidParameter):
            either.pull_image(REPO, "v1", layout, **kwargs)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.pull_image(REPO, "bad tag", layout)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.pull_image(REPO, "v1", 42)
    assert not layout.exists()
    assert ecr.stats.count() == 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(ecr_layers.DestinationError):
        either.pull_image(REPO, "v1", tmp_path / "file")
    with pytest.raises(ecr_layers.DestinationError):
        either.pull_image(REPO, "v1", tmp_path / "missing" / "layout")
    assert ecr.stats.count() == 0
    # Someone else's index.json is never overwritten with a guess.
    layout.mkdir()
    (layout / "index.json").write_text("not json")
    with pytest.raises(ecr_layers.DestinationError):
        either.pull_image(REPO, "v1", layout)
    assert (layout / "index.json").read_text() == "not json"


def test_a_docker_manifest_list_pulls_to_a_valid_layout(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    seeded = ecr.push_platform_image(
        REPO, "docker", platforms=("linux/amd64", "linux/arm64/v8"), kind="docker"
    )
    layout = tmp_path / "layout"
    image = either.pull_image(REPO, "docker", layout, platform="linux/amd64")
    assert image.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert image.digest == seeded.manifests["linux/amd64"].digest
    [entry] = check_layout(layout)["manifests"]
    assert entry["mediaType"] == image.media_type
    # skopeo up to at least 1.9 (Debian 12) looks only for OCI-typed entries in a layout's
    # index.json; the manifest is kept as served, so it is not found there.  A newer one
    # that reads it must read it right.
    inspect = subprocess.run(
        [skopeo_path(), "inspect", f"oci:{layout}:docker"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if inspect.returncode == 0:
        skopeo_checks(layout, "docker", image)
    else:
        assert 'no descriptor found for reference \\"docker' in inspect.stderr


def test_ctrl_c_stops_a_pull_at_once_and_leaves_the_index_alone(
    ecr: LocalECR, client: ecr_layers.LayerClient, tmp_path: pathlib.Path
) -> None:
    # KeyboardInterrupt from a callback is the synchronous client's Ctrl-C; asyncio's
    # is cancellation (test_aio).
    import time

    layers = [random_layer(8 * 1024 * 1024, seed=n) for n in range(4)]
    ecr.push_layers_image(REPO, "v1", layers)
    # 8 s per layer: long enough to be cut short, and the first MiB (the first progress)
    # comes after 1 s.
    ecr.faults.bandwidth = 1024 * 1024
    layout = tmp_path / "layout"
    started = 0.0

    def interrupt(done: int, total: int | None) -> None:
        nonlocal started
        if done and not started:
            started = time.monotonic()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.pull_image(REPO, "v1", layout, progress=interrupt)
    assert time.monotonic() - started < 2.5  # every download stopped, not waited for
    assert not (layout / "index.json").exists()
    assert staged(layout) == []
    assert not list((layout / "blobs").rglob("*")) or all(
        p.is_dir() or p.name != layers[0].digest for p in (layout / "blobs").rglob("*")
    )


def test_a_pull_leaving_never_removes_staging_under_another(tmp_path: pathlib.Path) -> None:
    from ecr_layers._layout import Layout

    ref = ecr_layers.ImageRef(REPO, "v1")
    first, second = Layout.open(tmp_path, ref), Layout.open(tmp_path, ref)
    first.tidy()  # the other pull is still using staging
    assert second.staging.is_dir()
    staged_blob = second.stage("sha256:" + "a" * 64)
    staged_blob.write_bytes(b"still mine")
    second.tidy()  # not empty: kept
    assert staged_blob.read_bytes() == b"still mine"
    staged_blob.unlink()
    third = Layout.open(tmp_path, ref)
    third.tidy()  # the last one out, with staging empty
    assert not third.staging.exists()
    third.tidy()  # and a second tidy is harmless


def test_concurrent_async_pulls_one_cancelled_share_a_layout(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import random

    from ecr_layers.aio import AsyncLayerClient

    ecr.push_layers_image(REPO, "v1", [random_layer(512 * 1024, seed=n) for n in range(3)])
    ecr.faults.bandwidth = 30 * 1024 * 1024
    for name, value in ecr.env().items():
        monkeypatch.setenv(name, value)
    chance = random.Random(7)

    async def main() -> list[BaseException | ecr_layers.Image]:
        outcomes: list[BaseException | ecr_layers.Image] = []
        async with AsyncLayerClient() as client:
            for n in range(10):
                layout = tmp_path / f"layout-{n}"
                pulls = [asyncio.ensure_future(client.pull_image(REPO, "v1", layout)) for _ in "ab"]
                await asyncio.sleep(chance.uniform(0, 0.03))
                pulls[0].cancel()
                outcomes += await asyncio.gather(*pulls, return_exceptions=True)
                assert staged(layout) == []
        return outcomes

    outcomes = asyncio.run(main())
    # The pull that was not cancelled always lands; the cancelled one only ever ends so.
    assert all(isinstance(o, ecr_layers.Image) for o in outcomes[1::2]), outcomes
    assert all(isinstance(o, ecr_layers.Image | asyncio.CancelledError) for o in outcomes[::2])
