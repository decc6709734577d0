"""
The one retry layer: `RetryPolicy`, the testing switch, and the retry loop.

The first attempt runs without any retry machinery; tenacity is imported and a
``Retrying`` built only once an attempt has failed with a `TransientError`.  A
successful call then costs what the botocore call costs, not a tenacity object.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._exceptions import ECRError, TransientError

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

_log = logging.getLogger("ecr_layers")


def _at_least(minimum: float) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum}, got {value!r}")

    return check


@attrs.frozen
class RetryPolicy:
    """How `TransientError` failures are retried: bounded, jittered, with a deadline.

    The defaults make at most 5 requests within 30 seconds, waiting about 0.1, 0.2,
    0.4 and 0.8 seconds plus up to 0.5 seconds of jitter between them.
    """

    #: Total tries, the first one included.  ``1`` turns retrying off.
    attempts: int = attrs.field(default=5, validator=_at_least(1))
    #: The first wait, in seconds; each later one doubles it.
    wait_initial: float = attrs.field(default=0.1, validator=_at_least(0))
    #: No single wait is longer than this, in seconds.
    wait_max: float = attrs.field(default=5.0, validator=_at_least(0))
    #: Up to this many seconds, drawn at random, are added to each wait.
    wait_jitter: float = attrs.field(default=0.5, validator=_at_least(0))
    #: No retry starts if it would begin later than this many seconds after the
    #: first attempt started; None for no deadline.  It does not cut short an
    #: attempt under way: botocore's connect and read timeouts bound those.
    timeout: float | None = attrs.field(default=30.0)


@attrs.define
class _Testing:
    enabled: bool = False
    attempts: int = 1


_TESTING = _Testing()


def set_testing(testing: bool, *, attempts: int = 1) -> None:
    """Turn test mode on or off for the whole process.

    In test mode nothing waits between attempts and at most *attempts* tries are
    made (1 by default: no retries), so a test suite that provokes failures does
    not sleep.  Meant for users' own test suites; the ``local_ecr`` pytest fixture
    does not turn it on by itself.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts!r}")
    _TESTING.enabled = testing
    _TESTING.attempts = attempts


def is_testing() -> bool:
    """Return whether test mode is on (see `set_testing`)."""
    return _TESTING.enabled


def call(attempt: Callable[[], T], policy: RetryPolicy) -> T:
    """Return ``attempt()``, retrying `TransientError` as *policy* says.

    Whatever escapes is an `ECRError` whose ``attempts`` says how many tries were made.
    """
    started = time.monotonic()
    try:
        return attempt()
    except TransientError as exc:
        first = exc
    except ECRError as exc:
        exc.attempts = 1
        raise
    return _retry(attempt, policy, first, started)


def _retry(
    attempt: Callable[[], T], policy: RetryPolicy, first: TransientError, started: float
) -> T:
    attempts = effective_attempts(policy)
    if attempts <= 1:
        first.attempts = 1
        raise first

    import tenacity  # Deferred: a process that never retries never imports it.

    failed: list[TransientError] = [first]

    def replay_then_call() -> T:
        # Tenacity's attempt 1 is the one already made: re-raise its error so that
        # attempt numbers, waits and the deadline count it, without a new request.
        if failed:
            raise failed.pop()
        return attempt()

    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
    if policy.timeout is not None:
        left = max(0.0, policy.timeout - (time.monotonic() - started))
        stop = stop | tenacity.stop_before_delay(left)
    return retrying(
        replay_then_call, stop=stop, wait=lambda state: backoff(policy, state.attempt_number)
    )


def retrying(
    attempt: Callable[[], T],
    *,
    stop: Callable[[tenacity.RetryCallState], bool],
    wait: Callable[[tenacity.RetryCallState], float],
) -> T:
    """Run *attempt* under tenacity: retry `TransientError` only, log each retry,
    and let the last typed error escape (never `tenacity.RetryError`) with ``attempts`` set.
    """
    import tenacity

    machine = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        return machine(attempt)
    except ECRError as exc:
        exc.attempts = machine.statistics.get("attempt_number", 1)
        raise


def effective_attempts(policy: RetryPolicy) -> int:
    """Return the tries *policy* allows, capped by test mode."""
    return min(policy.attempts, _TESTING.attempts) if _TESTING.enabled else policy.attempts


def backoff(policy: RetryPolicy, failures: int) -> float:
    """Return the wait after the *failures*-th failure in a row: exponential, jittered, capped.

    Zero in test mode: every wait, for API calls and downloads alike, comes from here.
    """
    if _TESTING.enabled:
        return 0.0
    exponential = policy.wait_initial * 2 ** (failures - 1)
    jitter = random.uniform(0, policy.wait_jitter)  # noqa: S311 (not cryptographic)
    return float(min(policy.wait_max, exponential + jitter))


def log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    code = getattr(exc, "code", type(exc).__name__)
    request_id = getattr(exc, "request_id", None)
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    # Never the URL or the message: only what identifies the failure.
    _log.warning(
        "ecr_layers: attempt %d failed with %s (request id %s); retrying in %.3fs",
        state.attempt_number,
        code,
        request_id,
        wait,
    )
