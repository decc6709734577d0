"""The command line's image commands: ``image``, ``pull``, ``export`` and ``cat``, their
output and their errors."""

from __future__ import annotations

import json
import os
import pathlib
import tarfile

import pytest

import ecr_layers
from ecr_layers import _cli
from ecr_layers.testing import LocalECR, tar_layer


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = _cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def code_of(name: str) -> int:
    """The documented exit status of the public error class *name*."""
    cls = getattr(ecr_layers, name)
    return _cli.exit_code(cls.__new__(cls))


def test_image_shows_the_chosen_platform_and_what_the_index_offers(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = local_ecr.push_platform_image("team/app", "v1")
    status, out, err = call(capsys, "image", "team/app", "v1", "--platform", "linux/arm64")
    assert (status, err) == (0, "")
    arm = seeded.manifests["linux/arm64/v8"]
    assert arm.digest in out
    assert "linux/arm64/v8 (chosen from index" in out
    assert "offers     linux/amd64, linux/arm64/v8" in out
    for layer in arm.layers:
        assert layer.digest in out
    status, out, _ = call(capsys, "image", "team/app", "v1", "--platform", "linux/amd64", "--json")
    doc = json.loads(out)
    assert doc["digest"] == seeded.manifests["linux/amd64"].digest
    assert doc["indexDigest"] == seeded.digest
    assert doc["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert [layer["digest"] for layer in doc["layers"]] == [
        layer.digest for layer in seeded.manifests["linux/amd64"].layers
    ]
    assert doc["totalSize"] == doc["config"]["size"] + sum(x["size"] for x in doc["layers"])


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("team/app", "nope"), "ImageNotFound"),
        (("team/app", "v1", "--platform", "linux/s390x"), "PlatformNotFound"),
        (("team/app", "bad tag"), "InvalidParameter"),
        (("team/app", "v1", "--platform", "linux"), "InvalidParameter"),
        (("team/none", "v1"), "RepositoryNotFound"),
    ],
)
def test_image_errors_are_one_line_with_their_status(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], error: str
) -> None:
    local_ecr.push_platform_image("team/app", "v1")
    status, out, err = call(capsys, "image", *args)
    assert status == code_of(error)
    assert one_line(err).startswith(f"ecr-layers: {error}")
    assert out == ""
    if error == "PlatformNotFound":
        assert "linux/amd64, linux/arm64/v8" in err


def test_pull_writes_a_layout_and_says_where(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    layers = [tar_layer({"a.txt": b"a"}), tar_layer({"b.txt": b"b"})]
    seeded = local_ecr.push_layers_image("team/app", "v1", layers)
    layout = tmp_path / "layout"
    status, out, err = call(capsys, "pull", "team/app", "v1", "-o", str(layout), "--parallel", "2")
    assert (status, err) == (0, "")
    assert out == f"{seeded.digest} oci:{layout}:v1\n"
    for layer in layers:
        assert (layout / "blobs/sha256" / layer.digest.split(":")[1]).read_bytes() == layer.data
    index = json.loads((layout / "index.json").read_text())
    assert [e["digest"] for e in index["manifests"]] == [seeded.digest]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--parallel", "0"), None),
        (("--parallel", "17"), None),
        (("-o", "/proc/nope/layout"), "DestinationError"),
        (("--platform", "x"), "InvalidParameter"),
    ],
)
def test_pull_refuses_bad_flags_in_one_line(
    local_ecr: LocalECR,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    args: tuple[str, ...],
    error: str | None,
) -> None:
    local_ecr.push_layers_image("team/app", "v1", [tar_layer({"a": b"a"})])
    local_ecr.stats.reset()
    full = ["pull", "team/app", "v1", *args]
    if "-o" not in args:
        full += ["-o", str(tmp_path / "layout")]
    status, _, err = call(capsys, *full)
    line = one_line(err)
    assert status == (2 if error is None else code_of(error))
    if error is not None:
        assert line.startswith(f"ecr-layers: {error}")
    assert local_ecr.stats.count() == 0


def test_pull_requires_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = call(capsys, "pull", "team/app", "v1")
    assert status == 2
    assert "-o" in one_line(err)


def test_export_writes_the_root_and_says_where(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    from .layering import entry, file, layer

    fifo = entry("run/fifo", tarfile.FIFOTYPE)
    seeded = local_ecr.push_layers_image(
        "team/app", "v1", [layer(file("etc/os-release", b"ID=cli\n"), fifo)]
    )
    root = tmp_path / "root"
    status, out, err = call(capsys, "export", "team/app", "v1", str(root))
    assert status == 0
    assert out == f"{seeded.digest} {root}\n"
    assert err == "skipped /run/fifo (device node or fifo)\n"
    assert (root / "etc" / "os-release").read_bytes() == b"ID=cli\n"


def test_export_refuses_an_unsafe_layer_in_one_line(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    from .layering import file, layer

    local_ecr.push_layers_image("team/app", "v1", [layer(file("../escape", b"x"))])
    status, out, err = call(capsys, "export", "team/app", "v1", str(tmp_path / "root"))
    assert (status, out) == (code_of("UnsafeLayer"), "")
    assert one_line(err).startswith("ecr-layers: UnsafeLayer")
    assert os.listdir(tmp_path) == []


def test_cat_writes_the_bytes(
    local_ecr: LocalECR,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    from .layering import file, layer

    content = bytes(range(256))
    local_ecr.push_layers_image("team/app", "v1", [layer(file("bin/blob", content))])
    status = _cli.main(["cat", "team/app", "v1", "/bin/blob"])
    out, err = capfdbinary.readouterr()
    assert (status, out, err) == (0, content, b"")


def test_cat_missing_file_in_one_line(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]
) -> None:
    from .layering import file, layer

    local_ecr.push_layers_image("team/app", "v1", [layer(file("etc/a", b"a"))])
    status, out, err = call(capsys, "cat", "team/app", "v1", "/etc/nope")
    assert (status, out) == (code_of("FileNotInImage"), "")
    assert one_line(err).startswith("ecr-layers: FileNotInImage")
