"""export_rootfs and read_file on well-formed images: OCI whiteout semantics, both
digests verified, one blob request for a top-layer file, and umoci's result."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import posixpath
import shutil
import subprocess
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import _operations, _rootfs
from ecr_layers.testing import LocalECR

from .imaging import REPO, Synchronous
from .layering import dir_, file, hardlink, layer, symlink, tree

BASE = layer(
    dir_("etc"),
    file("etc/os-release", b"ID=test\n"),
    file("etc/gone", b"whited out\n"),
    file("etc/kept", b"kept\n", 0o600),
    dir_("opq"),
    file("opq/old", b"hidden by the opaque marker\n"),
    dir_("opq/sub"),
    file("opq/sub/deep", b"hidden too\n"),
    dir_("becomes-file"),
    file("becomes-file/inner", b"gone with its directory\n"),
    file("bin/tool", b"#!/bin/sh\n", 0o755),
    file("bin/suid", b"suid\n", 0o4755),
    symlink("abs", "/etc/os-release"),
    symlink("etc/rel", "../bin/tool"),
    dir_("ro", 0o555),
    file("ro/f", b"read-only dir\n", 0o444),
)
TOP = layer(
    file("etc/.wh.gone", b""),
    dir_("opq"),
    file("opq/.wh..wh..opq", b""),
    file("opq/new", b"new\n"),
    file("becomes-file", b"now a file\n"),
    hardlink("etc/hard", "etc/kept"),
    file("etc/top", b"top layer\n"),
    file("usr/bin/late", b"parent dirs implied\n", 0o700),
)
EXPECTED = {
    "abs": ("link", "/etc/os-release", 0),
    "becomes-file": ("file", b"now a file\n", 0o644),
    "bin": ("dir", None, 0o755),
    "bin/suid": ("file", b"suid\n", 0o755),
    "bin/tool": ("file", b"#!/bin/sh\n", 0o755),
    "etc": ("dir", None, 0o755),
    "etc/hard": ("file", b"kept\n", 0o600),
    "etc/kept": ("file", b"kept\n", 0o600),
    "etc/os-release": ("file", b"ID=test\n", 0o644),
    "etc/rel": ("link", "../bin/tool", 0),
    "etc/top": ("file", b"top layer\n", 0o644),
    "opq": ("dir", None, 0o755),
    "opq/new": ("file", b"new\n", 0o644),
    "ro": ("dir", None, 0o555),
    "ro/f": ("file", b"read-only dir\n", 0o444),
    "usr": ("dir", None, 0o755),
    "usr/bin": ("dir", None, 0o755),
    "usr/bin/late": ("file", b"parent dirs implied\n", 0o700),
}


def test_export_applies_layers_with_oci_whiteouts(
    either: Synchronous, ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    destination = tmp_path / "root"
    result = either.export_rootfs(REPO, "v1", destination)
    assert isinstance(result, ecr_layers.Export)
    assert result.path == str(destination)
    assert result.skipped == ()
    assert result.image.layers[0].digest == BASE.digest
    assert tree(str(destination)) == EXPECTED
    hard = destination / "etc" / "hard"
    assert hard.stat().st_ino == (destination / "etc" / "kept").stat().st_ino
    assert os.listdir(tmp_path) == ["root"]  # the temporary directory was renamed


def test_setuid_kept_only_when_asked(
    client: ecr_layers.LayerClient, ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE])
    result = client.export_rootfs(REPO, "v1", tmp_path / "root", keep_special_bits=True)
    assert (pathlib.Path(result.path) / "bin" / "suid").stat().st_mode & 0o7777 == 0o4755


def test_empty_directory_destination_is_filled(
    client: ecr_layers.LayerClient, ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    ecr.push_layers_image(REPO, "v1", [layer(file("etc/top", b"top layer\n"))])
    (tmp_path / "root").mkdir()
    client.export_rootfs(REPO, "v1", tmp_path / "root")
    assert (tmp_path / "root" / "etc" / "top").read_bytes() == b"top layer\n"


BAD_DESTINATIONS = {
    # kind: (the destination under tmp_path, the message)
    "a file": ("root", "exists and is not a directory"),
    "non-empty": ("root", "is not empty"),
    "a link to an empty directory": ("root", "is a symbolic link"),
    "under a file": ("file/root", "parent is missing or not a directory"),
    "under nothing": ("missing/root", "parent is missing or not a directory"),
    "a name too long": ("x" * 300, "cannot be used: File name too long"),
}


def make_bad(kind: str, tmp_path: pathlib.Path) -> None:
    if kind == "a file":
        (tmp_path / "root").write_bytes(b"x")
    elif kind == "non-empty":
        (tmp_path / "root").mkdir()
        (tmp_path / "root" / "x").write_bytes(b"x")
    elif kind == "a link to an empty directory":
        (tmp_path / "empty").mkdir()
        (tmp_path / "root").symlink_to(tmp_path / "empty")
    elif kind == "under a file":
        (tmp_path / "file").write_bytes(b"x")


@pytest.mark.parametrize("kind", list(BAD_DESTINATIONS))
def test_bad_destination_refused_before_any_request(
    client: ecr_layers.LayerClient, ecr: LocalECR, tmp_path: pathlib.Path, kind: str
) -> None:
    ecr.push_layers_image(REPO, "v1", [TOP])
    ecr.stats.reset()
    where, message = BAD_DESTINATIONS[kind]
    make_bad(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ecr_layers.InvalidParameter, match=message) as caught:
        client.export_rootfs(REPO, "v1", tmp_path / where)
    assert caught.value.parameter == "destination"
    assert ecr.stats.count() == 0
    assert ecr.stats.blob_count() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if kind == "a link to an empty directory":
        assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("destination", ["", "a\0b", b"root", 3, None])
def test_a_destination_that_is_no_path_is_refused(
    client: ecr_layers.LayerClient, destination: object
) -> None:
    with pytest.raises(ecr_layers.InvalidParameter, match="destination must be"):
        client.export_rootfs(REPO, "v1", destination)  # type: ignore[arg-type]


def test_bad_diff_id_is_digest_mismatch_and_leaves_nothing(
    either: Synchronous, ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    wrong = attrs.evolve(TOP, diff_id="sha256:" + "0" * 64)
    ecr.push_layers_image(REPO, "v1", [BASE, wrong])
    with pytest.raises(ecr_layers.DigestMismatch) as caught:
        either.export_rootfs(REPO, "v1", tmp_path / "root")
    assert caught.value.layer_digest == TOP.digest
    assert caught.value.expected == "sha256:" + "0" * 64
    assert caught.value.actual == TOP.diff_id
    assert os.listdir(tmp_path) == []


def test_read_file_from_top_layer_is_one_blob_request(either: Synchronous, ecr: LocalECR) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    assert either.read_file(REPO, "v1", "/etc/top") == b"top layer\n"
    assert ecr.stats.blob_count() == 1
    assert ecr.stats.blob_count(TOP.digest) == 1


def test_read_file_through_layers_and_links(client: ecr_layers.LayerClient, ecr: LocalECR) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    assert client.read_file(REPO, "v1", "etc/os-release") == b"ID=test\n"
    assert client.read_file(REPO, "v1", "/abs") == b"ID=test\n"  # absolute symlink
    assert client.read_file(REPO, "v1", "etc/rel") == b"#!/bin/sh\n"  # relative, with ..
    assert client.read_file(REPO, "v1", "etc/hard") == b"kept\n"
    assert client.read_file(REPO, "v1", "becomes-file") == b"now a file\n"
    assert client.read_file(REPO, "v1", "/../etc/./top") == b"top layer\n"


@pytest.mark.parametrize(
    "path", ["etc/gone", "opq/old", "opq/sub/deep", "becomes-file/inner", "nowhere", "etc"]
)
def test_read_file_missing_or_hidden(
    client: ecr_layers.LayerClient, ecr: LocalECR, path: str
) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    with pytest.raises(ecr_layers.FileNotInImage) as caught:
        client.read_file(REPO, "v1", path)
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.path == path


def test_read_file_symlink_loop_is_bounded(client: ecr_layers.LayerClient, ecr: LocalECR) -> None:
    ecr.push_layers_image(REPO, "v1", [layer(symlink("a", "b"), symlink("b", "/a"))])
    with pytest.raises(ecr_layers.FileNotInImage, match="more than 40 symlinks"):
        client.read_file(REPO, "v1", "a")


def test_read_file_over_max_size(client: ecr_layers.LayerClient, ecr: LocalECR) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    with pytest.raises(ecr_layers.BlobTooLarge):
        client.read_file(REPO, "v1", "etc/top", max_size=4)


def test_client_defaults_agree_with_the_engine() -> None:
    assert _operations.MAX_UNPACKED == _rootfs.MAX_SIZE
    assert _operations.MAX_ENTRIES == _rootfs.MAX_ENTRIES
    assert _operations.MAX_FILE == _rootfs.MAX_FILE_SIZE


# -- names ---------------------------------------------------------------------------

NAME = st.text(st.sampled_from("ab./wh"), max_size=12)


@given(NAME)
def test_split_name_stays_inside_the_root(name: str) -> None:
    parts = _rootfs.split_name(name)
    if ".." in name.split("/"):
        assert parts is None
        return
    assert parts is not None
    assert all(part not in ("", ".", "..") and "/" not in part for part in parts)
    assert parts == [p for p in posixpath.normpath("/" + name).split("/") if p]


@given(st.text(max_size=20))
def test_whiteout_kind(base: str) -> None:
    kind = _rootfs.whiteout_kind(base)
    if base == ".wh..wh..opq":
        assert kind == "opaque"
    elif not base.startswith(".wh."):
        assert kind is None
    elif base in (".wh.", ".wh..", ".wh...") or base.startswith(".wh..wh."):
        assert kind == "reserved"  # never a whiteout of its directory
    else:
        assert kind == "whiteout"
        assert base[4:] not in ("", ".", "..")


# -- umoci, on the same OCI layout -----------------------------------------------------


def umoci_path() -> str:
    found = shutil.which("umoci")
    if found is None:
        why = "umoci is not installed (Debian/Ubuntu: apt-get install umoci)"
        if os.environ.get("ECR_LAYERS_REQUIRE_UMOCI"):
            pytest.fail(f"{why}, and ECR_LAYERS_REQUIRE_UMOCI says it must run")
        pytest.skip(why)
    return found


def test_export_matches_umoci_unpack(
    client: ecr_layers.LayerClient, ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    umoci = umoci_path()
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])
    layout = tmp_path / "layout"
    client.pull_image(REPO, "v1", layout)
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    ours = client.export_rootfs(REPO, "v1", tmp_path / "ours")
    theirs = tree(str(bundle / "rootfs"))
    mine = tree(ours.path)
    assert set(theirs) == set(mine)
    for path in theirs:
        kind, content, mode = theirs[path]
        # umoci keeps setuid bits; we drop them unless asked.
        assert mine[path] == (kind, content, mode & ~0o6000), path
    assert mine == EXPECTED


# -- media types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "match"),
    [
        ("application/vnd.oci.image.layer.v1.tar+zstd", r"ecr-layers\[zstd\]"),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", "not a tar"),
    ],
)
def test_unreadable_layer_types_are_unsupported_media_type(
    monkeypatch: pytest.MonkeyPatch, media_type: str, match: str
) -> None:
    import io
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if the extra were missing
    descriptor = ecr_layers.Descriptor(media_type, "sha256:" + "a" * 64, 1)
    layer_ref = ecr_layers.LayerRef(REPO, descriptor.digest)
    image = ecr_layers.ImageRef(REPO, "v1")
    with pytest.raises(ecr_layers.UnsupportedMediaType, match=match) as caught:
        _rootfs._decompressor(io.BytesIO(), descriptor, layer_ref, image)
    assert caught.value.media_type == media_type


# Every readable layer type, end to end: pushed with its own media type through PutImage,
# exported and read back, with both digests checked.
_KINDS = {
    "oci": (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.config.v1+json",
    ),
    "docker": (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
    ),
}
_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda raw: gzip.compress(raw, mtime=0),
    "tar": lambda raw: raw,
    # The ecr-layers[zstd] extra is part of the test extra: this case does not skip.
    "zstd": lambda raw: __import__("zstandard").ZstdCompressor().compress(raw),
}


@pytest.mark.parametrize(
    "case",
    [
        ("oci", "application/vnd.oci.image.layer.v1.tar+gzip", "gzip"),
        ("oci", "application/vnd.oci.image.layer.v1.tar", "tar"),
        ("oci", "application/vnd.oci.image.layer.v1.tar+zstd", "zstd"),
        ("docker", "application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"),
        ("docker", "application/vnd.docker.image.rootfs.diff.tar", "tar"),
    ],
)
def test_every_readable_layer_type_exports_and_reads(
    either: Synchronous, ecr: LocalECR, tmp_path: pathlib.Path, case: tuple[str, str, str]
) -> None:
    kind, media_type, compression = case
    manifest_type, config_type = _KINDS[kind]
    blobs = []
    for built in (BASE, TOP):
        raw = gzip.decompress(built.data)
        data = _COMPRESS[compression](raw)
        assert (data == raw) == (compression == "tar")
        blobs.append((data, built.diff_id))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in blobs]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": config_type,
            "digest": ecr.add_layer(REPO, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": media_type, "digest": ecr.add_layer(REPO, data), "size": len(data)}
            for data, _ in blobs
        ],
    }
    ecr.botocore_client().put_image(
        repositoryName=REPO, imageManifest=json.dumps(manifest), imageTag="v1"
    )
    result = either.export_rootfs(REPO, "v1", tmp_path / "root")
    assert [d.media_type for d in result.image.layers] == [media_type, media_type]
    assert tree(result.path) == EXPECTED
    ecr.stats.reset()
    assert either.read_file(REPO, "v1", "etc/top") == b"top layer\n"
    assert ecr.stats.blob_count() == 1


def test_destination_filled_meanwhile_is_destination_error_and_leaves_nothing(
    client: ecr_layers.LayerClient,
    ecr: LocalECR,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ecr.push_layers_image(REPO, "v1", [BASE, TOP])  # with a read-only directory in it
    destination = tmp_path / "root"
    real = os.rename

    def filled_meanwhile(source: str, target: str) -> None:
        destination.mkdir()
        (destination / "someone else's").write_bytes(b"")
        real(source, target)

    monkeypatch.setattr(os, "rename", filled_meanwhile)
    with pytest.raises(ecr_layers.DestinationError) as caught:
        client.export_rootfs(REPO, "v1", destination)
    assert caught.value.path == str(destination)
    assert os.listdir(tmp_path) == ["root"]
    assert os.listdir(destination) == ["someone else's"]


def test_asyncio_module_level_functions(local_ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    import asyncio

    from ecr_layers import aio

    local_ecr.push_layers_image(REPO, "v1", [BASE, TOP])

    async def main() -> tuple[ecr_layers.Export, bytes]:
        try:
            exported = await aio.export_rootfs(REPO, "v1", tmp_path / "root")
            return exported, await aio.read_file(REPO, "v1", "/abs")
        finally:
            await aio.close_default_client()

    exported, data = asyncio.run(main())
    assert tree(exported.path) == EXPECTED
    assert data == b"ID=test\n"
