"""The command line: exit codes, one-line errors, --json, and no secret in any output."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ecr_layers import _cli
from ecr_layers.testing import LocalECR


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_layers", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,  # the exit status is what these tests check
    )


def secrets_of(url: str) -> list[str]:
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    return [query["X-Amz-Signature"], query["X-Amz-Credential"]]


def test_url_prints_the_url_and_json(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    plain = run("url", "team/app", digest)
    assert plain.returncode == 0
    assert plain.stdout.startswith(local_ecr.endpoint_url)
    doc = json.loads(run("url", "team/app", digest, "--json").stdout)
    assert doc["layerDigest"] == digest
    assert doc["downloadUrl"].startswith(local_ecr.endpoint_url)
    assert doc["expiresAt"].endswith("+00:00")


def test_download_writes_the_verified_layer_quietly(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(100_000)
    [digest] = local_ecr.push_image("team/app", [data])
    out = run("download", "team/app", digest, "-o", str(tmp_path / "layer"), "--parallel", "2")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "layer").read_bytes() == data
    assert out.stderr == ""  # not a terminal: no progress bar
    assert run("download", "team/app", digest, "-o", str(tmp_path), "-q").stdout == ""


@pytest.mark.parametrize(
    ("args", "status", "cls"),
    [
        (("url", "Team/App", "sha256:ab"), 2, "InvalidParameter"),
        (("url", "team/app", "sha256:" + "0" * 64), 3, "LayersNotFound"),
        (("url", "team/nope", "sha256:" + "0" * 64), 3, "RepositoryNotFound"),
        (("download", "team/app", "sha256:abc"), 6, "UnsupportedDigest"),
    ],
)
def test_errors_are_one_line_with_a_distinct_exit_code(
    local_ecr: LocalECR, args: tuple[str, ...], status: int, cls: str
) -> None:
    local_ecr.create_repository("team/app")
    out = run(*args)
    assert out.returncode == status
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"ecr-layers: {cls} (")
    assert "Traceback" not in out.stderr


def test_inaccessible_and_auth_and_server_errors(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = local_ecr.add_layer("team/app", b"orphan")
    out = run("url", "team/app", orphan)
    assert out.returncode == 3
    assert "LayerInaccessible (LayerInaccessibleException)" in out.stderr
    assert "[request id " in out.stderr
    local_ecr.faults.fail_next("GetDownloadUrlForLayer", 100)
    out = run("url", "team/app", orphan)
    assert out.returncode == 5
    assert out.stderr.startswith("ecr-layers: ServerError (ServerException)")
    local_ecr.faults.clear()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    out = run("url", "team/app", orphan)
    assert out.returncode == 4
    assert "CredentialsError (InvalidSignatureException)" in out.stderr


def test_digest_mismatch_exit_code_and_no_secret(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(5000)])
    url = local_ecr.client().get_layer_url("team/app", digest).download_url
    local_ecr.faults.corrupt_next_blobs(1)
    out = run("download", "team/app", digest, "-o", str(tmp_path))
    assert out.returncode == 6
    assert "DigestMismatch" in out.stderr
    assert list(tmp_path.iterdir()) == []
    for secret in secrets_of(url):
        assert secret not in out.stderr + out.stdout


def test_error_line_redacts_any_url_in_a_message() -> None:
    from ecr_layers import DownloadError

    exc = DownloadError(
        "failed: https://b.s3.amazonaws.com/k?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA1 gone",
        request_id="r1",
    )
    line = _cli.error_line(exc)
    assert "s3cr3t" not in line
    assert "AKIA1" not in line
    assert line.endswith("[request id r1]")
    assert _cli.exit_code(exc) == 6


def test_every_exit_code_is_documented() -> None:
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    for _cls, code in _cli.EXIT_CODES:
        assert f"{code} " in readme


def test_demo_runs() -> None:
    out = run("demo")
    assert out.returncode == 0, out.stderr
    assert "sha256 verified" in out.stdout
    assert "caught LayersNotFound" in out.stdout
    assert "caught LayerInaccessible" in out.stdout
    assert "X-Amz-Signature" not in out.stdout


def test_a_terminal_gets_a_progress_bar(local_ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    pytest.importorskip("tqdm")
    [digest] = local_ecr.push_image("team/app", [os.urandom(2_000_000)])
    parent, child = pty.openpty()
    # A terminal has a size; tqdm draws nothing on a zero-width one.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", "download", "team/app", digest, "-o", str(tmp_path)],
        stderr=child, stdout=subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    os.close(child)  # the child has its own copy; reads end with EIO when it exits
    drawn = b""
    try:
        while chunk := os.read(parent, 65536):
            drawn += chunk
    except OSError:
        pass
    finally:
        os.close(parent)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"B/s" in drawn
    assert out.decode().strip().endswith(digest.replace(":", "-"))
