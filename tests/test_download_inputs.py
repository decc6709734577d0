"""Inputs and destinations are checked before anything leaves the machine or touches
the disk; resources are bounded; the client has a lifecycle."""

from __future__ import annotations

import errno
import gc
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import ecr_layers
from ecr_layers import _botocore, _landing
from ecr_layers.testing import LocalECR

from .imaging import Synchronous

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def ecr(local_ecr: LocalECR) -> LocalECR:
    """``either``'s LocalECR: the one the environment and the default client point at."""
    return local_ecr


def nothing_sent(ecr: LocalECR) -> None:
    assert ecr.stats.count() == 0
    assert ecr.stats.blob_count() == 0


@pytest.mark.parametrize("digest", [None, 42, b"sha256:ab", ["sha256:ab"]])
def test_bad_digest_types_are_invalid_parameters_everywhere(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path, digest: object
) -> None:
    for call in (
        lambda: either.download_layer("team/app", digest, tmp_path),
        lambda: ecr_layers.download_layer("team/app", digest, tmp_path),  # type: ignore[arg-type]
        lambda: either.get_layer_url("team/app", digest),
    ):
        with pytest.raises(ecr_layers.InvalidParameter) as info:
            call()
        assert info.value.parameter == "layerDigest"
    nothing_sent(local_ecr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"parallel": 0}, "parallel"),
        ({"parallel": -1}, "parallel"),
        ({"parallel": 17}, "parallel"),
        ({"parallel": 64}, "parallel"),
        ({"parallel": True}, "parallel"),
        ({"parallel": "4"}, "parallel"),
        ({"verify": "no"}, "verify"),
        ({"progress": 3}, "progress"),
    ],
)
def test_bad_options_are_invalid_parameters_before_any_request(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    kwargs: dict[str, object],
    parameter: str,
) -> None:
    with pytest.raises(ecr_layers.InvalidParameter) as info:
        either.download_layer("team/app", DIGEST, tmp_path, **kwargs)
    assert info.value.parameter == parameter
    nothing_sent(local_ecr)


def test_a_huge_digest_is_refused_even_unverified(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(ecr_layers.InvalidParameter) as info:
        either.download_layer("team/app", "sha256:" + "a" * 10**6, tmp_path, verify=False)
    assert "longer than 255" in info.value.message
    nothing_sent(local_ecr)


def test_an_unverifiable_digest_is_refused_before_leftovers_are_touched(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "layer"
    leftover = _landing.temp_path(target).with_name(
        _landing.temp_path(target).name.replace(f"-{os.getpid()}-", "-999999999-")
    )
    leftover.write_bytes(b"x")
    with pytest.raises(ecr_layers.UnsupportedDigest):
        either.download_layer("team/app", "sha256:abc", target)
    assert leftover.exists()
    nothing_sent(local_ecr)


@pytest.mark.parametrize(
    ("destination", "code"),
    [
        ("missing/layer.bin", errno.ENOENT),
        ("newdir/", errno.ENOENT),
        ("bad\0name", errno.EINVAL),
        ("x" * 300, errno.ENAMETOOLONG),
        ("", errno.EINVAL),
    ],
)
def test_destination_problems_are_destination_errors_before_the_lookup(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    destination: str,
    code: int,
) -> None:
    path = f"{tmp_path}/{destination}" if destination else ""
    with pytest.raises(ecr_layers.DestinationError) as info:
        either.download_layer("team/app", DIGEST, path)
    assert isinstance(info.value, OSError)
    assert info.value.errno == code
    assert info.value.layer_digest == DIGEST
    nothing_sent(local_ecr)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_directory_is_found_before_the_lookup(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # root ignores mode bits, so the check is what is observed: os.access says no.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m, **k: False if p == tmp_path else real_access(p, m, **k)
    )
    with pytest.raises(ecr_layers.DestinationError) as info:
        either.download_layer("team/app", DIGEST, tmp_path)
    assert info.value.errno == errno.EACCES
    nothing_sent(local_ecr)


def test_a_name_that_fits_gets_a_temporary_name_that_fits_too(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(1000)
    [digest] = local_ecr.push_image("team/app", [data])
    target = tmp_path / ("n" * 250)
    assert len(_landing.temp_path(target).name) <= 255
    assert either.download_layer("team/app", digest, target).read_bytes() == data


def test_a_trailing_slash_on_an_existing_directory_puts_the_layer_inside(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(1000)
    [digest] = local_ecr.push_image("team/app", [data])
    path = either.download_layer("team/app", digest, f"{tmp_path}/")
    assert path.parent == tmp_path
    assert path.read_bytes() == data


def test_a_full_disk_is_a_destination_error_and_leaves_nothing(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(3 * 1024 * 1024)])

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ecr_layers.DestinationError) as info:
        either.download_layer("team/app", digest, tmp_path)
    assert info.value.errno == errno.ENOSPC
    assert info.value.code == "ENOSPC"
    assert list(tmp_path.iterdir()) == []


def test_landing_fsyncs_the_file_and_then_the_directory(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(1000)])
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    either.download_layer("team/app", digest, tmp_path)
    assert synced == ["file", "dir"]


def test_get_layer_urls_refuses_a_bare_string(either: Synchronous) -> None:
    with pytest.raises(ecr_layers.InvalidParameter, match="not a single str"):
        either.get_layer_urls("team/app", DIGEST)


def test_get_layer_urls_keeps_errors_without_tracebacks(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    local_ecr.create_repository("team/app")
    digests = [f"sha256:{i:064x}" for i in range(50)]
    results = either.get_layer_urls("team/app", digests)
    for error in results.values():
        assert isinstance(error, ecr_layers.LayersNotFound)
        link: BaseException | None = error
        while link is not None:
            assert link.__traceback__ is None
            link = link.__cause__ or link.__context__


def test_the_client_closes_once_and_refuses_calls_after(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    with either:
        either.get_layer_url("team/app", digest)
        assert "download_retry_policy=" in repr(either.client)
        assert "retry_policy=" in repr(either.client)
    either.close()  # idempotent
    assert "closed=True" in repr(either.client)
    with pytest.raises(ecr_layers.ConfigurationError, match="closed"):
        either.get_layer_url("team/app", digest)
    gc.collect()


MINE = ecr_layers.RetryPolicy(attempts=2)


@pytest.mark.either(retry_policy=MINE)
def test_policies_are_named_and_the_download_one_has_a_longer_deadline(
    either: Synchronous,
) -> None:
    assert either.retry_policy == MINE
    assert either.download_retry_policy.attempts == 2
    assert either.download_retry_policy.timeout == 3600


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_MAX_ATTEMPTS": "2"}, 2),
        ({"AWS_RETRY_MODE": "standard"}, 3),
        ({"AWS_RETRY_MODE": "legacy"}, 5),
        ({"AWS_RETRY_MODE": "adaptive", "AWS_MAX_ATTEMPTS": "7"}, 7),
    ],
)
def test_botocore_attempts_are_what_botocore_resolves(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int
) -> None:
    import boto3

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    theirs = boto3.client("ecr", endpoint_url=local_ecr.endpoint_url, region_name="us-east-1")
    assert _botocore.botocore_attempts(theirs) == expected


@pytest.mark.parametrize("endpoint", ["notaurl", "ftp://127.0.0.1/", "http://127.0.0.1:99999"])
def test_unusable_endpoints_are_configuration_errors_at_construction(endpoint: str) -> None:
    with pytest.raises(ecr_layers.ConfigurationError):
        ecr_layers.LayerClient(endpoint_url=endpoint, region_name="us-east-1")


@pytest.mark.usefixtures("sigint_reaches_children")
def test_ctrl_c_stops_a_parallel_download_within_about_a_second(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(48 * 1024 * 1024)])
    local_ecr.faults.bandwidth = 1024 * 1024  # per connection: 4 s a range, 6 s in all
    code = (
        "import ecr_layers\n"
        f"ecr_layers.download_layer('team/app', {digest!r}, {str(tmp_path)!r}, parallel=8)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    try:
        # The first chunk comes alone, then eight ranges at once: with all nine answered,
        # every range worker is in its reads, each 4 s from its end.
        deadline = time.monotonic() + 30
        while local_ecr.stats.blob_count() < 9:
            assert time.monotonic() < deadline, "the download never got going"
            assert child.poll() is None, "the child ended before it was interrupted"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        child.wait(30)
        took = time.monotonic() - started
    finally:
        child.kill()
        child.wait()
        local_ecr.faults.bandwidth = None
    assert took < 2.5, took  # not the 4 s the ranges would take to finish
    assert child.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_a_target_that_is_not_a_regular_file_is_refused_not_replaced(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ecr_layers.DestinationError) as info:
        either.download_layer("team/app", DIGEST, fifo)
    assert info.value.errno == errno.EEXIST
    assert fifo.is_fifo()
    nothing_sent(local_ecr)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint_url": 5},
        {"region_name": 5},
        {"region_name": ""},
        {"profile_name": 5},
        {"session": 5},
        {"config": 5},
        {"retry_policy": 5},
        {"download_retry_policy": "fast"},
    ],
)
def test_client_settings_of_the_wrong_kind_are_invalid_parameters(
    kwargs: dict[str, object],
) -> None:
    with pytest.raises(ecr_layers.InvalidParameter):
        ecr_layers.LayerClient(**kwargs)  # type: ignore[arg-type]
    for client in (5, "ecr", object()):
        with pytest.raises(ecr_layers.InvalidParameter):
            ecr_layers.LayerClient(client)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": "3"},
        {"attempts": 2.5},
        {"timeout": float("nan")},
        {"timeout": -1},
        {"wait_initial": True},
        {"wait_max": float("inf")},
    ],
)
def test_bad_retry_policies_are_invalid_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ecr_layers.InvalidParameter) as info:
        ecr_layers.RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == next(iter(kwargs))


def test_a_closed_client_refuses_lookups_in_bulk_and_as_a_context(either: Synchronous) -> None:
    either.close()
    with pytest.raises(ecr_layers.ConfigurationError):
        either.get_layer_urls("team/app", [DIGEST])
    with pytest.raises(ecr_layers.ConfigurationError), either:
        pass


def test_every_entry_point_refuses_a_digest_over_255_characters(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    huge = "sha256:" + "a" * 5000
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_layer_url("team/app", huge)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_layer_urls("team/app", [huge])
    nothing_sent(local_ecr)
