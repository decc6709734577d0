"""Every download ends within its bounds, whatever the host does: counted on the server side.

Each test here failed on the code before the retry engine was shared (it ran until
killed, or made far more requests than the policy allows).
"""

from __future__ import annotations

import logging
import os
import pathlib
import time
import traceback

import pytest

import ecr_layers
from ecr_layers import _host, _transfer
from ecr_layers.testing import LocalECR

from . import hostile
from .hostile import point_at
from .imaging import FAST, Synchronous, patch_lookups

OP = "GetDownloadUrlForLayer"


@pytest.fixture
def ecr(local_ecr: LocalECR) -> LocalECR:
    """``either``'s LocalECR: the one the environment and the default client point at."""
    return local_ecr


def test_a_host_that_ignores_range_and_cuts_every_body_at_the_same_byte_ends_within_attempts(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    [digest] = local_ecr.push_image("team/app", [data])
    local_ecr.faults.ignore_range = True
    local_ecr.faults.truncate_next_blobs(10**6, after=1000)
    started = time.monotonic()
    with pytest.raises(ecr_layers.EndpointUnreachable) as info:
        either.download_layer("team/app", digest, tmp_path)
    # The first try moved the download to byte 1000; every later one threw its bytes
    # away with a restart and got no further: 3 tries without progress, then stop.
    assert local_ecr.stats.blob_count() == FAST.attempts + 1
    assert info.value.attempts == FAST.attempts + 1
    assert (info.value.repository_name, info.value.layer_digest) == ("team/app", digest)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_resets_after_1000_bytes_ends_within_attempts(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.serving(hostile.reset_after(1000)) as host:
        point_at(monkeypatch, host)
        with pytest.raises(ecr_layers.EndpointUnreachable):
            either.download_layer("team/app", host.digest, tmp_path)
        # attempts tries without progress, plus the first if the client kept the 1000
        # bytes that reached it before the reset: the async client does, while the
        # synchronous one's buffered read loses them with the error.
        assert FAST.attempts <= host.requests <= FAST.attempts + 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.either(
    download_retry_policy=ecr_layers.RetryPolicy(
        attempts=100, wait_initial=0.01, wait_jitter=0, timeout=1
    )
)
def test_a_host_that_hangs_mid_body_ends_by_the_deadline(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.serving(hostile.hang_after(1000)) as host:
        point_at(monkeypatch, host)
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        elapsed = time.monotonic() - started
        # About the 1 s deadline; without it, the 30 s read timeout.
        assert elapsed < 4, elapsed
        assert host.requests <= 3
    assert "deadline" in info.value.message or "in time" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_trickle_is_cut_by_the_minimum_rate_and_counts_as_no_progress(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transfer, "MIN_RATE_WINDOW", 0.3)
    with hostile.serving(hostile.trickle(0.05)) as host:
        point_at(monkeypatch, host)
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        # Bytes arrived on every connection, but too slowly to count: attempts tries,
        # each cut after its 0.3 s window (without the floor, 1 MiB takes 14 hours).
        assert host.requests == FAST.attempts
        assert time.monotonic() - started < 5
    assert "bytes/s" in info.value.message


@pytest.mark.either(
    download_retry_policy=ecr_layers.RetryPolicy(
        attempts=3, wait_initial=0.01, wait_jitter=0, timeout=1
    )
)
def test_a_trickle_fast_enough_for_the_floor_still_ends_by_the_deadline(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transfer, "MIN_RATE", 1)
    with hostile.serving(hostile.trickle(0.01)) as host:
        point_at(monkeypatch, host)
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        # About the 1 s deadline; without it, 1 MiB at 100 bytes/s takes three hours.
        assert time.monotonic() - started < 4
        assert host.requests == 1
    assert "deadline" in info.value.message


def test_a_url_renewal_is_one_api_attempt_and_only_the_outer_loop_retries(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(100_000)])
    local_ecr.faults.expire_next_urls(1)
    local_ecr.faults.fail_next(OP, 100)  # from the renewal on, the API fails for good
    calls_before = local_ecr.stats.count(OP)
    with pytest.raises(ecr_layers.ServerError) as info:
        either.download_layer("team/app", digest, tmp_path)
    # Every request the download made is one of its own tries: no loop inside a loop.
    assert local_ecr.stats.count(OP) - calls_before == FAST.attempts
    assert info.value.attempts == FAST.attempts


def test_expired_urls_found_by_every_range_at_once_are_renewed_once(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transfer, "CHUNK_SIZE", 256 * 1024)
    data = os.urandom(4 * 1024 * 1024)
    [digest] = local_ecr.push_image("team/app", [data])
    stale: list[ecr_layers.LayerUrl] = []
    real_expired = ecr_layers.LayerUrl.expired

    def expired(self: ecr_layers.LayerUrl, *, margin: float = 0.0) -> bool:
        # By identity: LocalECR may hand out the same URL text twice within a second.
        return any(self is url for url in stale) or real_expired(self, margin=margin)

    monkeypatch.setattr(ecr_layers.LayerUrl, "expired", expired)
    handed_out: list[ecr_layers.LayerUrl] = []

    def hand_out(
        layer: ecr_layers.LayerRef, url: ecr_layers.LayerUrl | None
    ) -> ecr_layers.LayerUrl:
        assert url is not None
        handed_out.append(url)
        return url

    patch_lookups(monkeypatch, hand_out, real=True)

    def expire_the_first_url(done: int, total: int | None) -> None:
        stale[:] = handed_out[:1]  # after the first chunk: every range worker finds it stale

    path = either.download_layer(
        "team/app", digest, tmp_path, parallel=4, progress=expire_the_first_url
    )
    assert path.read_bytes() == data
    assert local_ecr.stats.count(OP) == 2  # the first lookup, and one renewal for all four


def test_concurrent_renewals_after_a_403_share_one_lookup() -> None:
    import threading

    layer = ecr_layers.LayerRef("team/app", "sha256:" + "a" * 64)
    lookups: list[int] = []
    gate = threading.Barrier(8)

    arrived: list[int] = []
    everyone = threading.Condition()

    class Source:
        def lookup_once(self, layer: ecr_layers.LayerRef) -> ecr_layers.LayerUrl:
            lookups.append(1)
            if len(lookups) > 1:
                # The renewal: it ends only once every worker has come to forget the stale
                # URL, so each either waits behind it or comes after it.  Without the lock
                # that makes one renewal serve them all, each would renew: 9 lookups.
                with everyone:
                    assert everyone.wait_for(lambda: len(arrived) == 8, timeout=10)
            return ecr_layers.LayerUrl(f"https://host/{len(lookups)}", layer.layer_digest)

    job = _host.Job(Source(), None, layer, False, FAST, None, None)  # type: ignore[arg-type]
    stale = job.url()
    seen: list[str] = []

    def worker() -> None:
        gate.wait()
        with everyone:
            arrived.append(1)
            everyone.notify_all()
        job.forget(stale)  # every worker was answered "expired" for the same URL
        seen.append(job.url().download_url)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lookups) == 2
    assert seen == ["https://host/2"] * 8


@pytest.mark.either(
    retry_policy=ecr_layers.RetryPolicy(attempts=3, wait_initial=0.01, wait_jitter=0)
)
def test_backoff_counts_from_tenacity_and_is_not_off_by_one(
    local_ecr: LocalECR, either: Synchronous, caplog: pytest.LogCaptureFixture
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    local_ecr.faults.fail_next(OP, 2)
    with caplog.at_level(logging.WARNING, logger="ecr_layers"):
        either.get_layer_url("team/app", digest)
    waits = [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records]
    assert waits == ["0.010s", "0.020s"]


def test_throttling_waits_from_a_larger_base_and_honours_retry_after() -> None:
    from ecr_layers._retry import backoff

    policy = ecr_layers.RetryPolicy(wait_jitter=0)
    layer = ecr_layers.LayerRef("team/app", "sha256:ab")
    assert backoff(policy, 1, ecr_layers.ServerError("x")) == pytest.approx(0.1)
    assert backoff(policy, 1, ecr_layers.Throttled("x")) == pytest.approx(1.0)
    assert backoff(policy, 2, ecr_layers.Throttled("x")) == pytest.approx(2.0)
    asked = ecr_layers.Throttled("x", retry_after=7.0, layer=layer)
    assert backoff(policy, 1, asked) == pytest.approx(7.0)


@pytest.mark.either(
    retry_policy=ecr_layers.RetryPolicy(attempts=2, wait_throttled=0.001, wait_jitter=0)
)
def test_slowdown_and_429_from_the_download_host_are_throttling_and_retried(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(1000)])
    for status, code in ((503, "SlowDown"), (429, "TooManyRequests")):
        local_ecr.faults.fail_next_blobs(10, status=status, code=code)
        with pytest.raises(ecr_layers.Throttled) as info:
            either.download_layer("team/app", digest, tmp_path)
        assert info.value.attempts == 2
        assert local_ecr.stats.blob_count(status=status) == 2
        local_ecr.faults.clear()


@pytest.mark.either(retry_policy=ecr_layers.RetryPolicy(attempts=5, wait_initial=0, wait_jitter=0))
def test_the_retry_budget_stops_retrying_when_spent(
    local_ecr: LocalECR, either: Synchronous
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    either.budget.capacity = 12  # two retries' worth
    local_ecr.faults.fail_next(OP, 100)
    with pytest.raises(ecr_layers.ServerError) as info:
        either.get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 3
    assert "retry budget" in info.value.message
    # Spent, it makes one request per call; a success gives back what it spent.
    with pytest.raises(ecr_layers.ServerError):
        either.get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 4
    local_ecr.faults.clear()
    local_ecr.faults.fail_next(OP, 0)
    either.get_layer_url("team/app", digest)
    assert either.budget.available == 2


def test_a_blob_read_timeout_leaves_no_url_secret_in_the_chain(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_host, "READ_TIMEOUT", 0.3)  # one engine for both clients
    query = "X-Amz-Signature=SECRETSIG0123456789&X-Amz-Credential=AKIASECRETCRED%2F2026"
    with hostile.serving(hostile.nothing) as host:
        point_at(monkeypatch, host, host.url(query))
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            either.download_layer("team/app", host.digest, tmp_path)
    assert_no_secret(info.value, "SECRETSIG", "AKIASECRETCRED")


def test_a_download_url_with_a_bad_port_is_a_configuration_error_without_secrets(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.serving(hostile.nothing) as host:
        lookups = point_at(
            monkeypatch, host, "http://127.0.0.1:99999/blob?X-Amz-Signature=SECRETSIG0123456789"
        )
        with pytest.raises(ecr_layers.ConfigurationError) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        assert host.requests == 0
    assert len(lookups) == 1  # not retried
    assert info.value.layer_digest == host.digest
    assert_no_secret(info.value, "SECRETSIG")


@pytest.mark.parametrize("url", ["http://[::1", "ftp://127.0.0.1/x", "http://u:p@127.0.0.1/"])
def test_unusable_download_urls_are_configuration_errors(
    url: str,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with hostile.serving(hostile.nothing) as host:
        point_at(monkeypatch, host, url)
        with pytest.raises(ecr_layers.ConfigurationError):
            either.download_layer("team/app", host.digest, tmp_path)


def test_the_backslash_bypass_of_the_loopback_rule_is_refused(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # urllib.parse sees host 127.0.0.1 here; urllib3 would connect to 127.0.0.2, the
    # "other host", and send it the signed URL in clear text.
    with hostile.serving(hostile.nothing, address="127.0.0.2") as other:
        url = f"http://127.0.0.2:{other.port}\\@127.0.0.1/blob?X-Amz-Signature=SECRETSIG01234"
        point_at(monkeypatch, other, url)
        with pytest.raises(ecr_layers.ConfigurationError) as info:
            either.download_layer("team/app", other.digest, tmp_path)
        assert other.connections_before_now() == 0
        assert other.requests == 0
    assert_no_secret(info.value, "SECRETSIG")


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://admin:hunter2secret@127.0.0.1:1",
        "http://admin:hunter2secret@127.0.0.1:99999",
        "http://u:hunter2secret@127.0.0.2:1\\@127.0.0.1/",
    ],
)
def test_an_endpoint_with_userinfo_is_refused_and_its_password_never_shown(endpoint: str) -> None:
    with pytest.raises(ecr_layers.ConfigurationError) as info:
        ecr_layers.LayerClient(endpoint_url=endpoint, region_name="us-east-1")
    assert_no_secret(info.value, "hunter2secret")


def test_a_secret_the_download_host_echoes_back_is_redacted(
    local_ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    message = "GET /x?X-Amz-Signature=SECRETSIG0123 Credential=AKIASECRETCRED/2026 denied"
    local_ecr.faults.fail_next_blobs(1, status=404, code="NoSuchKey", message=message)
    with pytest.raises(ecr_layers.LayersNotFound) as info:
        either.download_layer("team/app", digest, tmp_path)
    assert_no_secret(info.value, "SECRETSIG0123", "AKIASECRETCRED")
    assert "denied" in info.value.message


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """No secret in the printed traceback, nor in any attribute of any link of the chain."""
    printed = "".join(traceback.format_exception(error))
    links: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in links:
        links.append(link)
        link = link.__cause__ or link.__context__
    assert len(links) >= 1
    for secret in secrets:
        assert secret not in printed
        for item in links:
            assert secret not in repr(vars(item)), (type(item), vars(item))
            assert secret not in repr(item.args)
            assert secret not in str(item)


def test_the_logging_filter_redacts_what_botocore_and_urllib3_log_at_debug(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    import io

    [digest] = local_ecr.push_image("team/app", [os.urandom(1000)])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ecr_layers.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with local_ecr.client() as client:
            url = client.get_layer_url("team/app", digest)
            client.download_layer("team/app", digest, tmp_path)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "X-Amz-Signature=REDACTED" in logged  # urllib3 logged the request line
    signature = url.download_url.split("X-Amz-Signature=")[1].split("&")[0]
    assert signature not in logged
    assert "Signature=REDACTED" in logged or "Authorization" not in logged


def test_a_clock_ahead_of_the_service_does_not_renew_the_url_before_every_range(
    local_ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transfer, "CHUNK_SIZE", 256 * 1024)
    data = os.urandom(4 * 1024 * 1024)
    [digest] = local_ecr.push_image("team/app", [data])
    # Every URL looks expired to this machine's clock the moment it arrives.
    monkeypatch.setattr(ecr_layers.LayerUrl, "expired", lambda self, margin=0.0: True)
    path = either.download_layer("team/app", digest, tmp_path, parallel=4)
    assert path.read_bytes() == data
    # The first stale-looking URL is renewed (it may really be stale); the second tells
    # the clock is off, and is used: two lookups, not one per range.
    assert local_ecr.stats.count(OP) == 2


@pytest.mark.parametrize("size", [1000, 300_000, 3 * 1024 * 1024])
def test_a_chunked_body_downloads_whole(
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    with hostile.serving(hostile.chunked(size)) as host:
        point_at(monkeypatch, host)
        path = either.download_layer("team/app", host.digest, tmp_path, parallel=1)
        assert path.read_bytes() == host.data
        assert host.requests == 1
