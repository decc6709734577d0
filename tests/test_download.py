"""Verified downloads: every fault injected through LocalECR, bytes and request counts checked."""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given

import ecr_layers
from ecr_layers import _landing, _transfer, _url
from ecr_layers.testing import LocalECR

from .imaging import FAST, Synchronous
from .strategies import documented_digests

OP = "GetDownloadUrlForLayer"


@pytest.fixture
def ecr(local_ecr: LocalECR) -> LocalECR:
    """``either``'s LocalECR: the one the environment and the default client point at."""
    return local_ecr


@pytest.fixture
def layer(local_ecr: LocalECR) -> tuple[bytes, str]:
    data = os.urandom(3 * 1024 * 1024 + 123)
    [digest] = local_ecr.push_image("team/app", [data])
    return data, digest


def only_the_layer(directory: pathlib.Path, digest: str) -> None:
    """Nothing but the finished layer in the directory: no partial or temporary files."""
    assert [p.name for p in directory.iterdir()] == [_landing.safe_file_name(digest)]


def blob_log(ecr: LocalECR) -> list[tuple[int, str | None, str | None]]:
    return [(r.status, r.range, r.fault) for r in ecr.stats.records if r.kind == "blob"]


def test_download_to_a_directory(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    seen: list[tuple[int, int | None]] = []
    path = either.download_layer(
        "team/app", digest, tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    assert path == tmp_path / ("sha256-" + digest[7:])
    assert path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    only_the_layer(tmp_path, digest)
    # Auto mode asks for the first chunk by range; this layer fits in it: one request.
    assert blob_log(local_ecr) == [(206, f"bytes=0-{_transfer.CHUNK_SIZE - 1}", None)]


def test_download_to_a_file_path_and_module_level(
    local_ecr: LocalECR, layer: tuple[bytes, str], tmp_path: pathlib.Path
) -> None:
    data, digest = layer
    path = ecr_layers.download_layer("team/app", digest, tmp_path / "layer.tar.gz")
    assert path.read_bytes() == data


def test_a_cut_connection_resumes_with_range(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.truncate_next_blobs(1, after=1_000_000)
    path = either.download_layer("team/app", digest, tmp_path, parallel=1)
    assert path.read_bytes() == data
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest[7:]
    log = blob_log(local_ecr)
    assert log[0] == (200, None, "truncate")
    # Resumed from the last byte received (some of the first 1 MB may still be in flight).
    assert log[1][0] == 206
    assert log[1][1] is not None
    resumed_from = int(log[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 1_000_000
    assert len(log) == 2
    only_the_layer(tmp_path, digest)


def test_a_server_that_ignores_range_means_starting_over(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.truncate_next_blobs(1, after=500_000)
    local_ecr.faults.ignore_range = True
    path = either.download_layer("team/app", digest, tmp_path, parallel=1)
    assert path.read_bytes() == data
    assert [s for s, _, _ in blob_log(local_ecr)] == [200, 200]


def test_an_expired_url_is_renewed_and_the_download_goes_on(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.truncate_next_blobs(1, after=1_000_000)
    armed: list[int] = []

    def expire_once_bytes_flow(done: int, total: int | None) -> None:
        # The URL "expires" mid-download: the resume after the cut meets a 403.
        if not armed:
            armed.append(done)
            local_ecr.faults.fail_next_blobs(
                1, status=403, code="AccessDenied", message="Request has expired"
            )

    path = either.download_layer(
        "team/app", digest, tmp_path, parallel=1, progress=expire_once_bytes_flow
    )
    assert path.read_bytes() == data
    log = blob_log(local_ecr)
    assert [s for s, _, _ in log] == [200, 403, 206]
    assert log[1][1] == log[2][1]  # the same range asked again, with the new URL
    assert local_ecr.stats.count(OP) == 2


def test_a_url_known_to_have_expired_is_renewed_before_use(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.expire_next_urls(1)
    assert either.download_layer("team/app", digest, tmp_path).read_bytes() == data
    assert local_ecr.stats.count(OP) == 2
    assert local_ecr.stats.blob_count(status=403) == 0


def test_5xx_from_the_download_host_is_retried(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.fail_next_blobs(2, status=503)
    assert either.download_layer("team/app", digest, tmp_path).read_bytes() == data
    assert [s for s, _, _ in blob_log(local_ecr)] == [503, 503, 206]


def test_persistent_5xx_gives_up_with_nothing_left(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    _, digest = layer
    local_ecr.faults.fail_next_blobs(10, status=500, code="InternalError")
    with pytest.raises(ecr_layers.ServerError) as info:
        either.download_layer("team/app", digest, tmp_path)
    assert info.value.code == "InternalError"
    assert info.value.attempts == FAST.attempts
    assert local_ecr.stats.blob_count() == FAST.attempts
    assert list(tmp_path.iterdir()) == []


def test_other_4xx_is_a_typed_error_not_retried(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    _, digest = layer
    # One condition, one class, wherever it happens: the bytes are not there.
    local_ecr.faults.fail_next_blobs(3, status=404, code="NoSuchKey", message="gone")
    with pytest.raises(ecr_layers.LayersNotFound) as info:
        either.download_layer("team/app", digest, tmp_path)
    assert (info.value.code, info.value.http_status) == ("NoSuchKey", 404)
    assert (info.value.repository_name, info.value.layer_digest) == ("team/app", digest)
    assert local_ecr.stats.blob_count() == 1
    assert list(tmp_path.iterdir()) == []
    # A 4xx the library has no better class for is a DownloadError, not retried either.
    local_ecr.stats.reset()
    local_ecr.faults.clear()
    local_ecr.faults.fail_next_blobs(3, status=400, code="InvalidArgument", message="no")
    with pytest.raises(ecr_layers.DownloadError) as other:
        either.download_layer("team/app", digest, tmp_path)
    assert type(other.value) is ecr_layers.DownloadError
    assert (other.value.code, other.value.http_status) == ("InvalidArgument", 400)
    assert local_ecr.stats.blob_count() == 1


def test_corrupt_bytes_raise_digest_mismatch_and_leave_nothing(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    _, digest = layer
    local_ecr.faults.corrupt_next_blobs(1)
    with pytest.raises(ecr_layers.DigestMismatch) as info:
        either.download_layer("team/app", digest, tmp_path / "out")
    assert info.value.expected == digest
    assert info.value.actual is not None
    assert info.value.actual != digest
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_only_replaced_by_verified_bytes(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    _, digest = layer
    target = tmp_path / "out"
    target.write_bytes(b"previous contents")
    local_ecr.faults.corrupt_next_blobs(1)
    with pytest.raises(ecr_layers.DigestMismatch):
        either.download_layer("team/app", digest, target)
    assert target.read_bytes() == b"previous contents"


@pytest.mark.parametrize("connections", [2, 4])
def test_parallel_ranged_download(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    connections: int,
) -> None:
    monkeypatch.setattr(_transfer, "CHUNK_SIZE", 256 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 5)
    [digest] = local_ecr.push_image("team/app", [data])
    local_ecr.faults.truncate_next_blobs(1, after=100_000)  # one range comes back short
    path = either.download_layer("team/app", digest, tmp_path, parallel=connections)
    assert path.read_bytes() == data
    log = blob_log(local_ecr)
    assert all(status == 206 for status, _, _ in log)
    assert sum(1 for _, _, fault in log if fault == "truncate") == 1
    assert len(log) == 13 + 1  # 13 ranges of 256 KiB, and one resumed


def test_auto_mode_goes_parallel_only_for_large_layers(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transfer, "CHUNK_SIZE", 256 * 1024)
    monkeypatch.setattr(_transfer, "AUTO_THRESHOLD", 2 * 1024 * 1024)
    small, large = os.urandom(1024 * 1024), os.urandom(2 * 1024 * 1024)
    digests = local_ecr.push_image("team/app", [small, large])
    either.download_layer("team/app", digests[0], tmp_path)
    assert len(blob_log(local_ecr)) == 2  # first chunk, then the rest in one stream
    local_ecr.stats.reset()
    # A first chunk that arrives slowly (a capped connection) means going parallel...
    monkeypatch.setattr(_transfer, "AUTO_FAST_ENOUGH", 10**15)
    either.download_layer("team/app", digests[1], tmp_path)
    assert len(blob_log(local_ecr)) == 8  # 8 ranges of 256 KiB
    local_ecr.stats.reset()
    # ...and one that arrives fast means one stream already outruns the client.
    monkeypatch.setattr(_transfer, "AUTO_FAST_ENOUGH", 1)
    either.download_layer("team/app", digests[1], tmp_path)
    assert len(blob_log(local_ecr)) == 2


def test_parallel_against_a_server_that_ignores_range(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.ignore_range = True
    assert either.download_layer("team/app", digest, tmp_path, parallel=4).read_bytes() == data
    assert local_ecr.stats.blob_count() == 1


def test_unverifiable_digests_are_refused_before_any_request(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    for digest in (
        "sha256:abc",
        "X.Y:ab",
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha512:" + "a" * 64,
    ):
        with pytest.raises(ecr_layers.UnsupportedDigest):
            either.download_layer("team/app", digest, tmp_path)
    assert local_ecr.stats.count() == 0


def test_verification_can_be_switched_off_explicitly(
    local_ecr: LocalECR,
    either: Synchronous,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
) -> None:
    data, digest = layer
    local_ecr.faults.corrupt_next_blobs(1)
    path = either.download_layer("team/app", digest, tmp_path, verify=False)
    assert path.read_bytes() != data


def test_lookup_errors_surface_before_any_file_exists(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    local_ecr.create_repository("team/app")
    with pytest.raises(ecr_layers.LayersNotFound):
        either.download_layer("team/app", "sha256:" + "0" * 64, tmp_path)
    assert list(tmp_path.iterdir()) == []


@given(documented_digests)
def test_file_names_never_escape_the_directory(digest: str) -> None:
    name = _landing.safe_file_name(digest)
    assert "/" not in name
    assert "\\" not in name
    assert name not in ("", ".", "..")
    assert not name.startswith(".")
    base = pathlib.Path("/srv/layers")
    assert (base / name).resolve().parent == base


def test_plain_http_is_refused_unless_loopback_or_allowed() -> None:
    _url.check_download_url("https://bucket.s3.amazonaws.com/x", allow_http=False)
    _url.check_download_url("http://127.0.0.1:5000/x", allow_http=False)
    _url.check_download_url("http://[::1]:5000/x", allow_http=False)
    _url.check_download_url("http://example.com/x", allow_http=True)
    for url in ("http://example.com/x?X-Amz-Signature=s3cr3t", "ftp://example.com/x"):
        with pytest.raises(ecr_layers.ConfigurationError) as info:
            _url.check_download_url(url, allow_http=False)
        assert "s3cr3t" not in str(info.value)


def test_ctrl_c_as_the_sink_starts_leaves_no_file(
    local_ecr: LocalECR,
    layer: tuple[bytes, str],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ecr_layers import _download

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_download, "Sink", interrupted)
    with pytest.raises(KeyboardInterrupt), local_ecr.client(retry_policy=FAST) as client:
        client.download_layer("team/app", layer[1], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_download_leaves_nothing_and_the_next_one_cleans_up(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    [digest] = local_ecr.push_image("team/app", [data])
    local_ecr.faults.bandwidth = 1024 * 1024  # slow enough to kill mid-way
    code = (
        f"import ecr_layers; ecr_layers.download_layer('team/app', {digest!r}, {str(tmp_path)!r})"
    )
    child = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = list(tmp_path.glob(".*.part"))
            if parts and parts[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never started writing")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    target = tmp_path / _landing.safe_file_name(digest)
    assert not target.exists()
    [leftover] = list(tmp_path.iterdir())
    assert leftover.name.startswith(f".{target.name}.")
    assert f".ecr-layers-{child.pid}-" in leftover.name
    local_ecr.faults.bandwidth = None
    path = local_ecr.client().download_layer("team/app", digest, tmp_path)
    assert path.read_bytes() == data
    only_the_layer(tmp_path, digest)


def test_a_live_downloads_temporary_file_is_not_removed(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "layer"
    tag = _landing.temp_path(target).name.split(".")[2]
    mine = tmp_path / f".layer.{tag}.ecr-layers-{os.getpid()}-abcd0123.part"
    dead = tmp_path / f".layer.{tag}.ecr-layers-999999999-abcd0123.part"
    other_tag = _landing.temp_path(tmp_path / "other").name.split(".")[2]
    other = tmp_path / f".other.{other_tag}.ecr-layers-999999999-abcd0123.part"
    for p in (mine, dead, other):
        p.write_bytes(b"x")
    assert _landing.clean_leftovers(target) == [dead]
    assert mine.exists()
    assert other.exists()


# -- concurrent lookups ------------------------------------------------------------------


def test_get_layer_urls_keeps_order_and_reports_failures_in_their_slot(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    digests = local_ecr.push_image("team/app", [os.urandom(100) for _ in range(20)])
    orphan = local_ecr.add_layer("team/app", b"orphan")
    missing = "sha256:" + "0" * 64
    asked = [*digests[:10], orphan, missing, *digests[10:], digests[0]]
    results = either.get_layer_urls("team/app", asked, max_workers=8)
    assert list(results) == list(dict.fromkeys(asked))
    assert isinstance(results[orphan], ecr_layers.LayerInaccessible)
    assert isinstance(results[missing], ecr_layers.LayersNotFound)
    for digest in digests:
        url = results[digest]
        assert isinstance(url, ecr_layers.LayerUrl)
        assert url.layer_digest == digest
    assert local_ecr.stats.count(OP) == 22  # the repeated digest is looked up once


def test_get_layer_urls_validates_everything_first(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    good = local_ecr.push_image("team/app", [b"x"])
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_layer_urls("team/app", [*good, "not a digest"])
    assert local_ecr.stats.count() == 0
    assert either.get_layer_urls("team/app", []) == {}


def test_get_layer_urls_retries_per_digest(local_ecr: LocalECR) -> None:
    digests = local_ecr.push_image("team/app", [os.urandom(10) for _ in range(5)])
    local_ecr.faults.fail_next(OP, 2)
    results = ecr_layers.get_layer_urls("team/app", digests)
    assert all(isinstance(r, ecr_layers.LayerUrl) for r in results.values())
    assert local_ecr.stats.count(OP) == 7


def test_a_range_that_fails_for_good_fails_the_parallel_download_cleanly(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transfer, "CHUNK_SIZE", 256 * 1024)
    [digest] = local_ecr.push_image("team/app", [os.urandom(2 * 1024 * 1024)])
    armed: list[int] = []

    def break_the_rest(done: int, total: int | None) -> None:
        if not armed:  # after the first chunk, every range meets a 403 that is not expiry
            armed.append(done)
            local_ecr.faults.fail_next_blobs(100, status=403, code="AccessDenied", message="No")

    with pytest.raises(ecr_layers.AccessDenied) as info:
        either.download_layer("team/app", digest, tmp_path, parallel=4, progress=break_the_rest)
    assert (info.value.code, info.value.http_status) == ("AccessDenied", 403)
    assert list(tmp_path.iterdir()) == []
