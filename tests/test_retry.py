"""The retry layer over real HTTP: every rule checked by counting requests at LocalECR."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

import ecr_layers
from ecr_layers._retry import MadeProgress, call, call_async
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
    # A request is counted when its slow handler ends, 0.5 s after it came: wait for
    # both, then the count must be exactly the two attempts.
    deadline = time.monotonic() + 10
    while local_ecr.stats.count(OP) < 2:
        assert time.monotonic() < deadline, local_ecr.stats.count(OP)
        time.sleep(0.01)
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
    client = local_ecr.client(retry_policy=policy)
    # The earlier tests' botocore clients are garbage: collected here, a full
    # collection (0.1-0.3 s on a busy machine) does not land in the timed call.
    gc.collect()
    started = time.monotonic()
    with pytest.raises(ecr_layers.ServerError) as info:
        client.get_layer_url("team/app", digest)
    # Ignoring the deadline would take 10 s; it is 0.35 s, and 1.2 s leaves 3x for load.
    assert time.monotonic() - started < 1.2
    assert 2 <= info.value.attempts <= 4
    assert local_ecr.stats.count(OP) == info.value.attempts


def test_testing_mode_removes_waits_and_caps_attempts(local_ecr: LocalECR, digest: str) -> None:
    local_ecr.faults.fail_next(OP, 100)
    slow = ecr_layers.RetryPolicy(attempts=5, wait_initial=10, wait_jitter=0)
    ecr_layers.set_testing(True, attempts=3)
    try:
        assert ecr_layers.is_testing()
        client = local_ecr.client(retry_policy=slow)  # built before the clock starts
        started = time.monotonic()
        with pytest.raises(ecr_layers.ServerError):
            client.get_layer_url("team/app", digest)
        assert time.monotonic() - started < 2  # not the 30 s of waits (10 s, then 20 s)
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


# -- The engine: tenacity carries on from the first failure, the budget is paid in
# one place, hooks are told of each retry, switches restore themselves.

LAYER = ecr_layers.LayerRef("team/app", "sha256:ab")
NO_WAIT = ecr_layers.RetryPolicy(attempts=5, wait_initial=0, wait_jitter=0, timeout=None)


class Flaky:
    """An attempt that fails *failures* times (each with a new error), then returns "ok"."""

    def __init__(self, failures: int, error: type[ecr_layers.ECRError] = ecr_layers.ServerError):
        self.failures = failures
        self.error = error
        self.raised: list[ecr_layers.ECRError] = []

    @property
    def tries(self) -> int:
        return len(self.raised) + (1 if self.done else 0)

    done = False

    def __call__(self) -> str:
        if len(self.raised) < self.failures:
            error = self.error(f"failure {len(self.raised) + 1}", layer=LAYER)
            self.raised.append(error)
            raise error
        self.done = True
        return "ok"

    async def coroutine(self) -> str:
        return self()


class CountingBudget(ecr_layers.RetryBudget):
    """A budget that records what each `acquire` was asked for and paid."""

    paid: list[int]

    def acquire(self, error: BaseException) -> int:
        cost = super().acquire(error)
        self.paid.append(cost)
        return cost


def counting_budget(capacity: int = 500) -> CountingBudget:
    budget = CountingBudget(capacity=capacity)
    budget.paid = []
    return budget


def recording_hook() -> tuple[list[ecr_layers.RetryDetails], Callable[..., None]]:
    seen: list[ecr_layers.RetryDetails] = []
    return seen, seen.append


def test_a_hook_is_told_the_attempt_error_and_wait_of_each_retry(
    local_ecr: LocalECR, digest: str
) -> None:
    local_ecr.faults.fail_next(OP, 3)
    policy = ecr_layers.RetryPolicy(attempts=5, wait_initial=0.001, wait_max=1, wait_jitter=0)
    seen, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]):
        local_ecr.client(retry_policy=policy).get_layer_url("team/app", digest)
    assert local_ecr.stats.count(OP) == 4
    # 1, 2, 3: the first failure is attempt 1, counted once (not 1, 1, 2).
    assert [d.attempt for d in seen] == [1, 2, 3]
    assert [d.wait for d in seen] == pytest.approx([0.001, 0.002, 0.004])
    assert all(isinstance(d.error, ecr_layers.ServerError) for d in seen)
    assert all(d.error.code == "ServerException" and d.error.request_id for d in seen)
    assert len({id(d.error) for d in seen}) == 3  # each try's own error


def test_tenacity_records_each_failure_once_and_never_reruns_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tenacity

    actions: list[str] = []
    recorded: list[tuple[int, BaseException]] = []
    iterate, record = tenacity.Retrying.iter, tenacity.RetryCallState.set_exception

    def spy_iter(self: tenacity.Retrying, retry_state: tenacity.RetryCallState) -> Any:
        action = iterate(self, retry_state)
        actions.append(type(action).__name__)
        return action

    def spy_record(self: tenacity.RetryCallState, exc_info: Any) -> None:
        recorded.append((self.attempt_number, exc_info[1]))
        record(self, exc_info)

    monkeypatch.setattr(tenacity.Retrying, "iter", spy_iter)
    monkeypatch.setattr(tenacity.RetryCallState, "set_exception", spy_record)
    flaky = Flaky(3)
    assert call(flaky, NO_WAIT) == "ok"
    assert flaky.tries == 4
    # Attempt 1 is recorded, not asked for: the first thing tenacity says is "sleep".
    assert actions == ["DoSleep", "DoAttempt"] * 3 + ["str"]
    assert recorded == list(zip([1, 2, 3], flaky.raised, strict=True))
    # The first error was raised once, by the try itself: never again into tenacity.
    first = flaky.raised[0]
    frames = [tb.tb_frame.f_code.co_name for tb in _walk(first.__traceback__)]
    assert frames == ["call", "__call__"]


def _walk(tb: types.TracebackType | None) -> Iterator[types.TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_the_last_error_says_how_many_tries_were_made() -> None:
    flaky = Flaky(100)
    seen, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]), pytest.raises(ecr_layers.ServerError) as info:
        call(flaky, NO_WAIT)
    assert info.value is flaky.raised[-1]
    assert info.value.attempts == flaky.tries == 5
    assert [d.attempt for d in seen] == [1, 2, 3, 4]


def test_the_budget_pays_once_per_retry_made_and_nothing_for_the_last_failure() -> None:
    budget = counting_budget()
    seen, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]), pytest.raises(ecr_layers.ServerError):
        call(Flaky(100), NO_WAIT, budget=budget)
    assert budget.paid == [5, 5, 5, 5]  # 4 retries for 5 tries, each paid once
    assert len(seen) == 4
    assert budget.available == 500 - 4 * 5
    # A timeout costs more; a success gives back what its call spent.
    budget.paid.clear()
    assert call(Flaky(2, ecr_layers.EndpointTimeout), NO_WAIT, budget=budget) == "ok"
    assert budget.paid == [10, 10]
    assert budget.available == 500 - 4 * 5


def test_a_retry_the_budget_refuses_is_neither_made_nor_reported() -> None:
    budget = counting_budget(capacity=12)  # two retries' worth
    flaky = Flaky(100)
    seen, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]), pytest.raises(ecr_layers.ServerError) as info:
        call(flaky, NO_WAIT, budget=budget)
    assert budget.paid == [5, 5, 0]
    assert flaky.tries == info.value.attempts == 3
    assert [d.attempt for d in seen] == [1, 2]
    assert "retry budget is spent" in info.value.message


def test_the_deadline_stops_retrying_without_spending_the_budget() -> None:
    budget = counting_budget()
    slow = ecr_layers.RetryPolicy(attempts=5, wait_initial=60, wait_max=60, wait_jitter=0)
    flaky = Flaky(100)
    with pytest.raises(ecr_layers.ServerError) as info:
        call(flaky, slow, budget=budget, deadline=time.monotonic() + 30)
    assert flaky.tries == info.value.attempts == 1  # a 60 s wait would pass the deadline
    assert budget.paid == []
    assert budget.available == 500


def test_tenacity_stop_and_wait_only_read() -> None:
    from ecr_layers._retry import _Run

    budget = counting_budget()
    first = ecr_layers.ServerError("first", layer=LAYER)
    run = _Run(first, NO_WAIT, budget, None, None)
    for _ in range(10):
        assert run.machine.stop(run.state) is False
        assert run.machine.wait(run.state) == 0
    assert budget.paid == []
    assert budget.available == 500
    assert (run.state.attempt_number, run.spent, run.progressed_at) == (1, 0, 0)


def test_tries_that_made_progress_do_not_count_against_attempts() -> None:
    def progress_on(tries: set[int], flaky: Flaky) -> MadeProgress:
        # Whether the failed try moved the download forward, by its number.
        return lambda error: flaky.raised.index(error) + 1 in tries  # type: ignore[arg-type]

    flaky = Flaky(100, ecr_layers.EndpointUnreachable)
    policy = ecr_layers.RetryPolicy(attempts=3, wait_initial=0.001, wait_jitter=0)
    seen, hook = recording_hook()
    with (
        ecr_layers.set_on_retry_hooks([hook]),
        pytest.raises(ecr_layers.EndpointUnreachable) as info,
    ):
        call(flaky, policy, progress=progress_on({1, 3}, flaky))
    # Tries 1 and 3 moved forward; after each the count of failures in a row starts
    # again, and so does the backoff: 3 tries in a row without progress end it.
    assert flaky.tries == info.value.attempts == 6
    assert [d.attempt for d in seen] == [1, 2, 3, 4, 5]
    assert [d.wait for d in seen] == pytest.approx([0.001, 0.001, 0.001, 0.001, 0.002])
    # With retrying off, a first try that moved forward is still resumed, once.
    flaky = Flaky(100, ecr_layers.EndpointUnreachable)
    with pytest.raises(ecr_layers.EndpointUnreachable) as info:
        call(flaky, attrs.evolve(policy, attempts=1), progress=progress_on({1}, flaky))
    assert flaky.tries == info.value.attempts == 2


def test_the_async_front_door_runs_the_same_engine() -> None:
    budget = counting_budget()
    flaky = Flaky(3, ecr_layers.Throttled)
    policy = ecr_layers.RetryPolicy(attempts=5, wait_throttled=0.001, wait_jitter=0)
    seen, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]):
        assert asyncio.run(call_async(flaky.coroutine, policy, budget=budget)) == "ok"
    assert flaky.tries == 4
    assert [d.attempt for d in seen] == [1, 2, 3]
    assert [d.wait for d in seen] == pytest.approx([0.001, 0.002, 0.004])  # throttling base
    assert budget.paid == [5, 5, 5]
    assert budget.available == 500  # refunded on success
    with pytest.raises(ecr_layers.Throttled) as info:
        asyncio.run(call_async(Flaky(100, ecr_layers.Throttled).coroutine, policy))
    assert info.value.attempts == 5


def test_a_permanent_error_on_a_later_try_ends_the_call_at_once() -> None:
    tries = 0

    def attempt() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ecr_layers.ServerError("flaky", layer=LAYER)
        raise ecr_layers.AccessDenied("no", layer=LAYER)

    with pytest.raises(ecr_layers.AccessDenied) as info:
        call(attempt, NO_WAIT)
    assert tries == info.value.attempts == 3


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen, hook = recording_hook()

    def broken(details: ecr_layers.RetryDetails) -> None:
        raise RuntimeError("a metrics backend is down")

    with (
        ecr_layers.set_on_retry_hooks([broken, hook]),
        caplog.at_level(logging.WARNING, logger="ecr_layers"),
    ):
        assert call(Flaky(2), NO_WAIT) == "ok"
    assert len(seen) == 2  # the hook after the broken one still ran
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


def test_the_log_line_is_the_default_hook_and_can_be_turned_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ecr_layers._retry import log_retry

    assert ecr_layers.get_on_retry_hooks() == (log_retry,)
    with caplog.at_level(logging.WARNING, logger="ecr_layers"):
        with ecr_layers.set_on_retry_hooks([]):
            assert ecr_layers.get_on_retry_hooks() == ()
            call(Flaky(2), NO_WAIT)
        assert caplog.records == []
        call(Flaky(1), NO_WAIT)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("ecr_layers: attempt 1 failed with ServerException")
    assert line.endswith("retrying in 0.000s")


def test_set_on_retry_hooks_restores_and_resets() -> None:
    from ecr_layers._retry import log_retry

    _, hook = recording_hook()
    with ecr_layers.set_on_retry_hooks([hook]):
        with ecr_layers.set_on_retry_hooks([*ecr_layers.get_on_retry_hooks(), log_retry]):
            assert ecr_layers.get_on_retry_hooks() == (hook, log_retry)
        assert ecr_layers.get_on_retry_hooks() == (hook,)
        ecr_layers.set_on_retry_hooks(None)  # a plain call: back to the default
        assert ecr_layers.get_on_retry_hooks() == (log_retry,)
        ecr_layers.set_on_retry_hooks([hook])
    assert ecr_layers.get_on_retry_hooks() == (log_retry,)  # what was there before the block
    with pytest.raises(TypeError, match="callable"):
        ecr_layers.set_on_retry_hooks(["not a function"])  # type: ignore[list-item]
    assert ecr_layers.get_on_retry_hooks() == (log_retry,)


def tries_made(attempts: int = 5) -> int:
    """How many tries a call that always fails makes under the current test mode."""
    flaky = Flaky(100)
    with pytest.raises(ecr_layers.ServerError):
        call(flaky, attrs.evolve(NO_WAIT, attempts=attempts))
    return flaky.tries


def test_set_testing_as_a_plain_call_stays_until_changed() -> None:
    assert not ecr_layers.is_testing()
    try:
        ecr_layers.set_testing(True, attempts=2)  # the returned manager is dropped
        assert ecr_layers.is_testing()
        assert tries_made() == 2
        ecr_layers.set_testing(True)
        assert tries_made() == 1
    finally:
        ecr_layers.set_testing(False)
    assert not ecr_layers.is_testing()
    # Caps, never raises: a policy with fewer attempts keeps them.
    with ecr_layers.set_testing(True, attempts=3):
        assert tries_made(attempts=2) == 2


def test_nested_set_testing_unwinds_one_level_at_a_time_attempts_included() -> None:
    with ecr_layers.set_testing(True, attempts=3):
        assert tries_made() == 3
        with ecr_layers.set_testing(True, attempts=2):
            assert tries_made() == 2
            with ecr_layers.set_testing(False):
                assert not ecr_layers.is_testing()
            assert tries_made() == 2
        assert tries_made() == 3
        with pytest.raises(ZeroDivisionError), ecr_layers.set_testing(True, attempts=4):
            1 / 0  # noqa: B018
        assert tries_made() == 3  # put back even when the block raised
        # A plain call inside a block is undone when the block ends, as in stamina:
        # the manager puts back what was there before it was made.
        ecr_layers.set_testing(True, attempts=4)
        assert tries_made() == 4
    assert not ecr_layers.is_testing()
    assert tries_made() == 5


def test_set_testing_refuses_bad_attempts_and_changes_nothing() -> None:
    with ecr_layers.set_testing(True, attempts=2):
        with pytest.raises(ValueError, match="attempts"):
            ecr_layers.set_testing(True, attempts=0)
        assert tries_made() == 2


def test_test_mode_reports_zero_waits_to_hooks() -> None:
    seen, hook = recording_hook()
    slow = ecr_layers.RetryPolicy(attempts=5, wait_initial=60, wait_max=60, wait_jitter=0)
    with (
        ecr_layers.set_testing(True, attempts=3),
        ecr_layers.set_on_retry_hooks([hook]),
        pytest.raises(ecr_layers.ServerError),
    ):
        call(Flaky(100), slow)
    assert [(d.attempt, d.wait) for d in seen] == [(1, 0.0), (2, 0.0)]


def test_a_call_that_may_not_retry_never_imports_tenacity() -> None:
    code = (
        "import sys\n"
        "import ecr_layers\n"
        "from ecr_layers._retry import call\n"
        "def fail():\n"
        "    raise ecr_layers.ServerError('x')\n"
        "ecr_layers.set_testing(True)\n"
        "try:\n"
        "    call(fail, ecr_layers.RetryPolicy())\n"
        "except ecr_layers.ServerError as exc:\n"
        "    assert exc.attempts == 1\n"
        "print('tenacity' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
