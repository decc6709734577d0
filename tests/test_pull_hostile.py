"""pull_image into layouts that are not what they seem, and manifests that lie: a pull
owns only what it made, and never reads a blob through anything but a regular file."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR, tar_layer

from .imaging import REPO, Synchronous, image_answer, serve_images
from .test_pull import skopeo_checks, staged

EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()


def blobs_of(layout: pathlib.Path) -> dict[pathlib.Path, tuple[int, bytes]]:
    """Every blob in *layout*: its inode and its bytes."""
    return {
        path: (path.stat().st_ino, path.read_bytes())
        for path in (layout / "blobs").rglob("*")
        if path.is_file()
    }


def lying_about_the_config(ecr: LocalECR, image: ecr_layers.Image, change: int) -> None:
    """Serve the next BatchGetImage *image*'s manifest with its config's size off by *change*
    (under the digest of the lying bytes, which verify)."""
    document = json.loads(image.manifest_bytes)
    document["config"]["size"] += change
    serve_images(ecr, image_answer(json.dumps(document), media_type=image.media_type))


# -- a failed pull keeps what the layout had -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [(-1, ecr_layers.BlobTooLarge), (1, ecr_layers.InvalidResponse)],
    ids=["smaller", "larger"],
)
def test_a_failed_pull_keeps_the_blobs_other_images_need(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    change: int,
    error: type[ecr_layers.ECRError],
) -> None:
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a.txt": b"a" * 100})])
    layout = tmp_path / "layout"
    v1 = either.pull_image(REPO, "v1", layout)
    before = blobs_of(layout)
    index = (layout / "index.json").read_bytes()
    # v2 shares v1's config, and its manifest gives that config a wrong size.
    lying_about_the_config(ecr, v1, change)
    with pytest.raises(error):
        either.pull_image(REPO, "v2", layout)
    after = blobs_of(layout)
    assert {path: after.get(path) for path in before} == before  # the same files, untouched
    assert (layout / "index.json").read_bytes() == index
    assert staged(layout) == []
    skopeo_checks(layout, "v1", v1)


def test_a_damaged_blob_a_failed_pull_could_not_replace_is_left_as_it_was(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    layer = tar_layer({"a.txt": b"a" * 1000})
    ecr.push_layers_image(REPO, "v1", [layer])
    layout = tmp_path / "layout"
    either.pull_image(REPO, "v1", layout)
    path = layout / "blobs/sha256" / layer.digest.split(":")[1]
    damaged = b"X" + path.read_bytes()[1:]
    path.write_bytes(damaged)
    ecr.faults.corrupt_next_blobs(10)
    with pytest.raises(ecr_layers.DigestMismatch):
        either.pull_image(REPO, "v1", layout)
    assert path.read_bytes() == damaged  # not this pull's to remove; the next one replaces it
    assert staged(layout) == []


# -- the layout's directories are never followed out of it ----------------------------------


def _link_out(layout: pathlib.Path, elsewhere: pathlib.Path) -> None:
    (layout / "blobs").mkdir()
    (layout / "blobs" / "sha256").symlink_to(elsewhere)


def _file_in_place(layout: pathlib.Path, elsewhere: pathlib.Path) -> None:
    (layout / "blobs").mkdir()
    (layout / "blobs" / "sha256").write_text("not a directory")


def _other_algorithm_linked(layout: pathlib.Path, elsewhere: pathlib.Path) -> None:
    (layout / "blobs").mkdir()
    (layout / "blobs" / "sha512").symlink_to(elsewhere)


@pytest.mark.parametrize(
    "plant",
    [_link_out, _file_in_place, _other_algorithm_linked],
    ids=["sha256-linked", "sha256-a-file", "sha512-linked"],
)
def test_a_blobs_directory_that_is_a_link_or_a_file_is_refused_before_anything_is_written(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    plant: Callable[[pathlib.Path, pathlib.Path], None],
) -> None:
    seeded = ecr.push_layers_image(REPO, "v1", [tar_layer({"a.txt": b"a" * 100})])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Named as the pull's config would be, and not its bytes: what a cleanup would remove.
    bait = elsewhere / seeded.config_digest.split(":")[1]
    bait.write_text("mine")
    layout = tmp_path / "layout"
    layout.mkdir()
    plant(layout, elsewhere)
    planted = sorted(p.relative_to(layout) for p in layout.rglob("*"))
    ecr.stats.reset()
    with pytest.raises(ecr_layers.DestinationError) as caught:
        either.pull_image(REPO, "v1", layout)
    assert caught.value.errno is not None
    assert "blobs" in (caught.value.path or "")
    assert bait.read_text() == "mine"
    assert [p.name for p in elsewhere.iterdir()] == [bait.name]
    assert sorted(p.relative_to(layout) for p in layout.rglob("*")) == planted
    assert ecr.stats.count() == 0


# -- blob paths that are not regular files ------------------------------------------------


@pytest.fixture
def empty_blob_image(ecr: LocalECR) -> None:
    """An image one of whose layers is the empty blob, so the manifest says size 0."""
    ecr.push_image(REPO, [b"", tar_layer({"a.txt": b"a"}).data], tag="v1")


@pytest.fixture
def unblock(tmp_path: pathlib.Path) -> Iterator[list[pathlib.Path]]:
    """Fifos to open for writing after a while: a pull blocked reading one ends, and the
    test fails by the clock instead of hanging the suite."""
    fifos: list[pathlib.Path] = []
    done = threading.Event()

    def writer() -> None:
        if done.wait(10):
            return
        for fifo in fifos:
            if fifo.exists() and stat.S_ISFIFO(fifo.lstat().st_mode):
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a reader waits: never blocks
                os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield fifos
    done.set()
    thread.join()


def _fifo(path: pathlib.Path, elsewhere: pathlib.Path) -> None:
    os.mkfifo(path)


def _link_to_a_file(path: pathlib.Path, elsewhere: pathlib.Path) -> None:
    (elsewhere / "empty").write_bytes(b"")
    path.symlink_to(elsewhere / "empty")


def _link_to_dev_null(path: pathlib.Path, elsewhere: pathlib.Path) -> None:
    path.symlink_to(os.devnull)


def _device(path: pathlib.Path, elsewhere: pathlib.Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.stat(os.devnull).st_rdev)
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")


@pytest.mark.usefixtures("empty_blob_image")
@pytest.mark.parametrize(
    "plant",
    [_fifo, _link_to_a_file, _link_to_dev_null, _device],
    ids=["fifo", "link-to-a-file", "link-to-dev-null", "device"],
)
def test_a_blob_path_that_is_not_a_regular_file_is_replaced_never_read(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    unblock: list[pathlib.Path],
    plant: Callable[[pathlib.Path, pathlib.Path], None],
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    path = layout / "blobs" / "sha256" / EMPTY.split(":")[1]
    plant(path, elsewhere)
    unblock.append(path)
    outside = {p: p.read_bytes() for p in elsewhere.iterdir()}
    started = time.monotonic()
    image = either.pull_image(REPO, "v1", layout)
    assert time.monotonic() - started < 5  # a fifo was never opened for reading
    assert EMPTY in [layer.digest for layer in image.layers]
    assert stat.S_ISREG(path.lstat().st_mode)  # replaced by the verified blob
    assert path.read_bytes() == b""
    assert {p: p.read_bytes() for p in elsewhere.iterdir()} == outside
    skopeo_checks(layout, "v1", image)


def test_a_directory_at_a_blob_path_is_a_typed_error_before_any_download(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    seeded = ecr.push_layers_image(REPO, "v1", [tar_layer({"a.txt": b"a"})])
    layout = tmp_path / "layout"
    path = layout / "blobs" / "sha256" / seeded.config_digest.split(":")[1]
    path.mkdir(parents=True)
    (path / "inside").write_text("kept")
    ecr.stats.reset()
    with pytest.raises(ecr_layers.DestinationError) as caught:
        either.pull_image(REPO, "v1", layout)
    assert caught.value.path == str(path)
    assert (path / "inside").read_text() == "kept"
    assert ecr.stats.blob_count() == 0
    assert not (layout / "index.json").exists()


def test_a_blobs_directory_swapped_for_a_link_during_a_pull_is_not_followed(
    tmp_path: pathlib.Path,
) -> None:
    from ecr_layers._layout import Layout

    layout_dir, elsewhere = tmp_path / "layout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (layout_dir / "blobs" / "sha256").mkdir(parents=True)
    layout = Layout.open(layout_dir, ecr_layers.ImageRef(REPO, "v1"))
    try:
        # Swapped after the layout was opened: the pull keeps to the directory it opened.
        (layout_dir / "blobs" / "sha256").rename(tmp_path / "moved")
        (layout_dir / "blobs" / "sha256").symlink_to(elsewhere)
        data = b"a blob"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        staged_blob = layout.stage(digest)
        staged_blob.write_bytes(data)
        layout.adopt(staged_blob, digest)
        assert layout.has(ecr_layers.Descriptor("x", digest, len(data)))
    finally:
        layout.tidy()
    assert list(elsewhere.iterdir()) == []
    assert (tmp_path / "moved" / digest.split(":")[1]).read_bytes() == data
