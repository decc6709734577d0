"""export_rootfs against hostile layers: each case exports safely inside the root or
raises a typed error, and nothing outside the destination changes.

Every test plants, beside the destination, a sentinel directory and a file a hardlink
would target, and checks after the export that they and their parent are exactly as
they were.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import tarfile
from typing import Any

import pytest

import ecr_layers
from ecr_layers.testing import Layer, LocalECR

from .imaging import REPO, Synchronous
from .layering import dir_, entry, file, hardlink, layer, symlink, tree


class Outside:
    """The tmp_path around the destination, and its state before the export."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.sentinel = base / "sentinel"
        self.sentinel.mkdir()
        (self.sentinel / "keep").write_bytes(b"keep me\n")
        self.target = base / "target"
        self.target.write_bytes(b"a hardlink would take me\n")
        (base / "work").mkdir()
        self.destination = base / "work" / "root"
        self.before = self.state()

    def state(self) -> dict[str, object]:
        found: dict[str, object] = {
            k: v for k, v in tree(str(self.base)).items() if not k.startswith("work")
        }
        found["target nlink"] = self.target.stat().st_nlink
        return found

    def check(self, *, exported: bool) -> None:
        assert self.state() == self.before
        assert os.listdir(self.base / "work") == (["root"] if exported else [])


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> Outside:
    return Outside(tmp_path)


def export(
    client: ecr_layers.LayerClient | Synchronous,
    ecr: LocalECR,
    outside: Outside,
    *layers: Layer,
    **options: Any,
) -> pathlib.Path:
    ecr.push_layers_image(REPO, "v1", list(layers))
    result = client.export_rootfs(REPO, "v1", outside.destination, **options)
    return pathlib.Path(result.path)


def refused(
    client: ecr_layers.LayerClient,
    ecr: LocalECR,
    outside: Outside,
    *layers: Layer,
    error: type[Exception] = ecr_layers.UnsafeLayer,
    match: str | None = None,
    **options: Any,
) -> pytest.ExceptionInfo[Exception]:
    with pytest.raises(error, match=match) as caught:
        export(client, ecr, outside, *layers, **options)
    outside.check(exported=False)
    return caught


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../escape", "a/.."])
def test_dotdot_names_refused(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, name: str
) -> None:
    bad = layer(file("ok", b"ok\n"), file(name, b"escaped\n"))
    caught = refused(client, ecr, outside, bad, match="climbs out")
    assert isinstance(caught.value, ecr_layers.UnsafeLayer)
    assert caught.value.entry == name
    assert caught.value.layer_digest == bad.digest


def test_absolute_names_stay_inside(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    inside = str(outside.sentinel / "pwned")
    root = export(client, ecr, outside, layer(file(inside, b"inside\n")))
    assert (root / inside.lstrip("/")).read_bytes() == b"inside\n"
    outside.check(exported=True)


def test_symlink_then_write_across_layers(
    either: Synchronous, ecr: LocalECR, outside: Outside
) -> None:
    # GNU tar's CVE-2025-45582 shape: one layer plants the link, the next writes through it.
    plant = layer(symlink("evil", str(outside.sentinel)))
    write = layer(file("evil/keep", b"overwritten?\n"), file("evil/pwned", b"pwned\n"))
    root = export(either, ecr, outside, plant, write)
    outside.check(exported=True)
    inside = root / str(outside.sentinel).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"pwned\n"
    assert (inside / "keep").read_bytes() == b"overwritten?\n"
    assert os.readlink(root / "evil") == str(outside.sentinel)  # stored verbatim


def test_relative_symlink_climbing_out(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    climb = "../" * 40 + str(outside.sentinel).lstrip("/")
    plant = layer(dir_("a"), symlink("a/up", climb))
    write = layer(file("a/up/pwned", b"pwned\n"))
    root = export(client, ecr, outside, plant, write)
    outside.check(exported=True)
    assert (root / str(outside.sentinel).lstrip("/") / "pwned").read_bytes() == b"pwned\n"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "through-symlink"])
def test_hardlink_out_refused(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, how: str
) -> None:
    if how == "absolute":
        layers = [layer(hardlink("h", str(outside.target)))]
    elif how == "dotdot":
        layers = [layer(hardlink("h", "../../target"))]
    else:
        layers = [layer(symlink("s", str(outside.base))), layer(hardlink("h", "s/target"))]
    refused(client, ecr, outside, *layers, match="hardlink target")


@pytest.mark.parametrize("name", [".", "./", "/"])
def test_symlink_named_dot_refused(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, name: str
) -> None:
    # umoci's CVE-2021-29136: a '/.' symlink put later layers onto the host.
    plant = layer(symlink(name, str(outside.base)))
    write = layer(file("sentinel/pwned", b"pwned\n"))
    refused(client, ecr, outside, plant, write, match="replace the root")


@pytest.mark.parametrize("target", ["/", "/..", "../.."])
def test_symlink_to_root_then_writes_under_it(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, target: str
) -> None:
    plant = layer(symlink("rootlink", target))
    # Written where the sentinel would be if the link were followed on the host: a
    # regression then shows in the sentinel (under tmp_path), never in the host's own /etc.
    inside = str(outside.sentinel).lstrip("/") + "/written"
    write = layer(file("rootlink/" + inside, b"inside\n"))
    root = export(client, ecr, outside, plant, write)
    outside.check(exported=True)
    assert (root / inside).read_bytes() == b"inside\n"


@pytest.mark.parametrize("name", ["etc/.wh.", "etc/.wh..", "etc/.wh...", ".wh."])
def test_bare_whiteout_refused_and_never_deletes_its_directory(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, name: str
) -> None:
    # stereoscope let a bare '.wh.' wipe /etc.
    base = layer(dir_("etc"), file("etc/passwd", b"root\n"))
    refused(client, ecr, outside, base, layer(file(name, b"")), match="reserved whiteout")


@pytest.mark.parametrize("name", ["etc/.wh..wh..opqX", "etc/.wh..wh..opq.", "etc/.wh..wh.x"])
def test_opaque_prefix_trick_refused(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, name: str
) -> None:
    base = layer(dir_("etc"), file("etc/passwd", b"root\n"))
    refused(client, ecr, outside, base, layer(file(name, b"")), match="reserved whiteout")


@pytest.mark.parametrize("marker", [".wh..wh..opq", ".wh.keep"])
@pytest.mark.parametrize("target", ["outside", "inside"])
def test_whiteouts_under_a_symlinked_directory_refused(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside, marker: str, target: str
) -> None:
    # Never a real system directory: were the link followed on the host (a regression; CI
    # runs as root), the opaque marker would empty it.  This one exists on no host.
    link = str(outside.sentinel) if target == "outside" else "/ecr-layers-no-such-dir"
    plant = layer(dir_("etc"), file("etc/keep", b"keep\n"), symlink("link", link))
    refused(client, ecr, outside, plant, layer(file(f"link/{marker}", b"")), match="symlink")


def test_whiteout_of_a_symlink_removes_only_the_link(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    plant = layer(symlink("s", str(outside.sentinel)), symlink("t", str(outside.target)))
    remove = layer(file(".wh.s", b""), file("t", b"replaces the link\n"))
    root = export(client, ecr, outside, plant, remove)
    outside.check(exported=True)
    assert not os.path.lexists(root / "s")
    assert (root / "t").read_bytes() == b"replaces the link\n"
    assert not (root / "t").is_symlink()


def test_device_nodes_and_fifos_skipped_and_listed(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    specials = layer(
        dir_("dev"),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        entry("run/fifo", tarfile.FIFOTYPE),
        file("etc/ok", b"ok\n"),
    )
    ecr.push_layers_image(REPO, "v1", [specials])
    result = client.export_rootfs(REPO, "v1", outside.destination)
    outside.check(exported=True)
    assert result.skipped == ("/dev/null", "/dev/sda", "/run/fifo")
    assert tree(result.path) == {
        "dev": ("dir", None, 0o755),
        "etc": ("dir", None, 0o755),
        "etc/ok": ("file", b"ok\n", 0o644),
        "run": ("dir", None, 0o755),
    }


def test_gzip_bomb_stops_at_max_size(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    zeros = 64 * 1024 * 1024
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bomb")
        info.size = zeros
        tar.addfile(info, io.BytesIO(bytes(zeros)))
    data = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    assert len(data) < zeros // 500  # small compressed, large expanded
    from ecr_layers.testing import digest_of

    bomb = Layer(data, digest_of(data), digest_of(raw.getvalue()), ("bomb",))
    caught = refused(
        client,
        ecr,
        outside,
        bomb,
        error=ecr_layers.BlobTooLarge,
        match="max_size",
        max_size=1024 * 1024,
    )
    assert isinstance(caught.value, ecr_layers.BlobTooLarge)
    assert caught.value.limit == 1024 * 1024


def test_entry_count_stops_at_max_entries(
    client: ecr_layers.LayerClient, ecr: LocalECR, outside: Outside
) -> None:
    many = layer(*(file(f"f{i}", b"") for i in range(50)))
    refused(
        client,
        ecr,
        outside,
        many,
        error=ecr_layers.BlobTooLarge,
        max_entries=10,
        match="max_entries",
    )


def test_read_file_skips_dotdot_and_reserved_names(
    client: ecr_layers.LayerClient, ecr: LocalECR
) -> None:
    base = layer(file("etc/x", b"x\n"), file("etc/y", b"y\n"))
    top = layer(
        file("../etc/x", b"climbed\n"), file("etc/.wh.", b""), file("etc/.wh..wh..opqX", b"")
    )
    ecr.push_layers_image(REPO, "v1", [base, top])
    assert client.read_file(REPO, "v1", "etc/x") == b"x\n"  # not the '..' entry, not hidden
    assert client.read_file(REPO, "v1", "etc/y") == b"y\n"
