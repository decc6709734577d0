"""The retry layer over real HTTP: every rule checked by counting requests at LocalECR."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR

OP = "GetDownloadUrlForLayer"
FAST = ecr_layers.RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, wait_jitter=0.001)


@pytest.fixture
def digest(local_ecr: LocalECR) -> str:
    return local_ecr.push_image("team/app", [b"layer one"])[0]


def test_persistent_server_exception_costs_exactly_attempts_requests(
    local_ecr: LocalECR, digest: str
) -> None:
    local_ecr.faults.fail_next(OP, 100)
    with pytest.raises(ecr_layers.ServerError) as info:
        local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 4
    assert info.value.attempts == 4
    assert info.value.code == "ServerException"
    assert info.value.request_id


def test_the_default_client_makes_exactly_the_default_attempts(
    local_ecr: LocalECR, digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client built from the environment has botocore's retries off: 5, not 5 x 3.
    local_ecr.faults.fail_next(OP, 100)
    ecr_layers.set_testing(True, attempts=100)
    try:
        with pytest.raises(ecr_layers.ServerError):
            ecr_layers.get_layer_url("team/app", digest)
    finally:
        ecr_layers.set_testing(False)
    assert local_ecr.stats.count(OP) == ecr_layers.RetryPolicy().attempts == 5


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"code": "ServerException", "status": 500}, ecr_layers.ServerError),
        ({"code": "ThrottlingException", "status": 400}, ecr_layers.Throttled),
        ({"code": "TooManyRequestsException", "status": 429}, ecr_layers.Throttled),
        (
            {"status": 502, "body": b"<html><body>502 Bad Gateway</body></html>"},
            ecr_layers.ServerError,
        ),
        ({"status": 503, "body": b""}, ecr_layers.ServerError),
        ({"drop_connection": True}, ecr_layers.EndpointUnreachable),
    ],
)
def test_transient_failures_are_retried_then_succeed(
    local_ecr: LocalECR, digest: str, fault: dict[str, object], expected: type[Exception]
) -> None:
    local_ecr.faults.fail_next(OP, 2, **fault)  # type: ignore[arg-type]
    url = local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    assert url.layer_digest == digest
    assert local_ecr.stats.count(OP) == 3
    # And the same fault, persistent, ends in the typed error.
    local_ecr.stats.reset()
    local_ecr.faults.fail_next(OP, 10, **fault)  # type: ignore[arg-type]
    with pytest.raises(expected) as info:
        local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    assert info.value.attempts == 4  # type: ignore[attr-defined]
    assert local_ecr.stats.count(OP) == 4
    local_ecr.faults.clear()


def test_read_timeouts_are_retried(local_ecr: LocalECR, digest: str) -> None:
    local_ecr.faults.add_latency(0.5, OP)
    client = local_ecr.client(
        retry_policy=FAST.__class__(attempts=2, wait_initial=0), read_timeout=0.1
    )
    with pytest.raises(ecr_layers.EndpointTimeout) as info:
        client.get_layer_url("team/app", digest)
    assert info.value.attempts == 2
    time.sleep(0.6)  # let the slow handlers finish so the count is complete
    assert local_ecr.stats.count(OP) == 2


def test_an_unreachable_endpoint_is_retried_and_typed() -> None:
    ecr = LocalECR()
    client = ecr.client(
        retry_policy=ecr_layers.RetryPolicy(attempts=3, wait_initial=0, wait_jitter=0),
        connect_timeout=1,
    )
    ecr.stop()  # nothing listens there now
    with pytest.raises(ecr_layers.EndpointUnreachable) as info:
        client.get_layer_url("team/app", "sha256:ab")
    assert info.value.attempts == 3
    assert isinstance(
        info.value.__cause__, __import__("botocore").exceptions.EndpointConnectionError
    )


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("LayersNotFoundException", ecr_layers.LayersNotFound),
        ("LayerInaccessibleException", ecr_layers.LayerInaccessible),
        ("RepositoryNotFoundException", ecr_layers.RepositoryNotFound),
        ("InvalidParameterException", ecr_layers.InvalidParameter),
        ("UnableToGetUpstreamLayerException", ecr_layers.UnableToGetUpstreamLayer),
        ("AccessDeniedException", ecr_layers.AccessDenied),
        ("ExpiredTokenException", ecr_layers.CredentialsError),
    ],
)
def test_permanent_errors_are_not_retried(
    local_ecr: LocalECR, digest: str, code: str, cls: type[Exception]
) -> None:
    local_ecr.faults.fail_next(OP, 5, code=code, status=400)
    with pytest.raises(cls) as info:
        local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 1
    assert info.value.attempts == 1  # type: ignore[attr-defined]
    local_ecr.faults.clear()


def test_bad_input_sends_nothing(local_ecr: LocalECR) -> None:
    client = local_ecr.client(retry_policy=FAST)
    for args in (("Team", "sha256:ab"), ("team/app", "sha256:zz"), ("a" * 257, "sha256:ab")):
        with pytest.raises(ecr_layers.InvalidParameter):
            client.get_layer_url(*args)
    with pytest.raises(ecr_layers.InvalidParameter):
        client.get_layer_url("team/app", "sha256:ab", registry_id="1234")
    assert local_ecr.stats.count() == 0


def test_the_deadline_stops_retrying(local_ecr: LocalECR, digest: str) -> None:
    local_ecr.faults.fail_next(OP, 100)
    policy = ecr_layers.RetryPolicy(
        attempts=100, wait_initial=0.1, wait_max=0.1, wait_jitter=0, timeout=0.35
    )
    started = time.monotonic()
    with pytest.raises(ecr_layers.ServerError) as info:
        local_ecr.client(retry_policy=policy).get_layer_url("team/app", digest)
    assert time.monotonic() - started < 1.0
    assert 2 <= info.value.attempts <= 4
    assert local_ecr.stats.count(OP) == info.value.attempts


def test_testing_mode_removes_waits_and_caps_attempts(local_ecr: LocalECR, digest: str) -> None:
    local_ecr.faults.fail_next(OP, 100)
    slow = ecr_layers.RetryPolicy(attempts=5, wait_initial=10, wait_jitter=0)
    ecr_layers.set_testing(True, attempts=3)
    try:
        assert ecr_layers.is_testing()
        started = time.monotonic()
        with pytest.raises(ecr_layers.ServerError):
            local_ecr.client(retry_policy=slow).get_layer_url("team/app", digest)
        assert time.monotonic() - started < 2
    finally:
        ecr_layers.set_testing(False)
    assert not ecr_layers.is_testing()
    assert local_ecr.stats.count(OP) == 3


def test_each_retry_logs_one_line_without_the_url(
    local_ecr: LocalECR, digest: str, caplog: pytest.LogCaptureFixture
) -> None:
    local_ecr.faults.fail_next(OP, 2)
    with caplog.at_level(logging.DEBUG, logger="ecr_layers"):
        url = local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    lines = [r.getMessage() for r in caplog.records if r.name == "ecr_layers"]
    assert len(lines) == 2
    assert "attempt 1" in lines[0]
    assert "ServerException" in lines[0]
    assert "request id" in lines[0]
    signature = url.download_url.split("X-Amz-Signature=")[1]
    assert all(signature not in line and "X-Amz" not in line for line in lines)


def test_a_client_that_retries_by_itself_is_not_retried_on_top(
    local_ecr: LocalECR, digest: str
) -> None:
    retrying = local_ecr.botocore_client(retries={"mode": "standard", "total_max_attempts": 3})
    client = ecr_layers.LayerClient(retrying)
    assert client.retry_policy.attempts == 1
    local_ecr.faults.fail_next(OP, 100)
    with pytest.raises(ecr_layers.ServerError):
        client.get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 3  # botocore's 3, not 3 x 5
    with pytest.warns(UserWarning, match="up to 6 requests per call"):
        ecr_layers.LayerClient(retrying, retry_policy=ecr_layers.RetryPolicy(attempts=2))
    local_ecr.faults.clear()


def test_a_successful_call_never_imports_tenacity() -> None:
    code = (
        "import sys\n"
        "from ecr_layers.testing import LocalECR\n"
        "with LocalECR() as ecr:\n"
        "    [d] = ecr.push_image('team/app', [b'x'])\n"
        "    ecr.client().get_layer_url('team/app', d)\n"
        "print('tenacity' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        ecr_layers.RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="wait_max"):
        ecr_layers.RetryPolicy(wait_max=-1)
    with pytest.raises(ValueError, match="attempts"):
        ecr_layers.set_testing(True, attempts=0)


@pytest.mark.parametrize("body", [b"<html>not json</html>", b"", b'{"layerDigest": "sha256:ab"}'])
def test_an_unusable_200_is_a_typed_error_not_retried(
    local_ecr: LocalECR, digest: str, body: bytes
) -> None:
    local_ecr.faults.fail_next(OP, 1, status=200, body=body)
    with pytest.raises(ecr_layers.InvalidResponse) as info:
        local_ecr.client(retry_policy=FAST).get_layer_url("team/app", digest)
    assert info.value.http_status == 200
    assert local_ecr.stats.count(OP) == 1


def test_set_testing_puts_the_previous_setting_back_as_a_context_manager() -> None:
    assert not ecr_layers.is_testing()
    with ecr_layers.set_testing(True, attempts=2):
        assert ecr_layers.is_testing()
        with ecr_layers.set_testing(False):
            assert not ecr_layers.is_testing()
        assert ecr_layers.is_testing()
    assert not ecr_layers.is_testing()


def test_a_stopped_download_does_not_wait_out_its_backoff() -> None:
    import threading

    from ecr_layers._retry import call

    stop = threading.Event()
    tries = 0

    def attempt() -> None:
        nonlocal tries
        tries += 1
        raise ecr_layers.EndpointUnreachable("cut", layer=ecr_layers.LayerRef("a/b", "x:y"))

    slow = ecr_layers.RetryPolicy(attempts=5, wait_initial=5, wait_max=5, wait_jitter=0)
    threading.Timer(0.2, stop.set).start()  # a Ctrl-C, or a sibling that failed for good
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        call(attempt, slow, stop=stop)
    assert time.monotonic() - started < 2.5  # not the 5 s backoff
    assert tries == 1
