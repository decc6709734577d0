"""
The one retry layer: `RetryPolicy`, the retry budget, the testing switch, and the loop.

API calls and downloads both go through `call`.  The first attempt runs without any
retry machinery; tenacity is imported and a ``Retrying`` built only once an attempt
has failed with a `TransientError`, so a successful call costs what the botocore
call costs.  Everything the loop decides (stop, wait) is computed from tenacity's
`RetryCallState` and from the attempt number of the last try that moved a download
forward, which only the attempt itself records: never a counter bumped in ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._exceptions import DownloadUrlExpired, ECRError, EndpointTimeout, Throttled, TransientError

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

_log = logging.getLogger("ecr_layers")


def _at_least(minimum: float) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and attribute.name == "timeout":
            return
        whole = attribute.name == "attempts"
        kind = int if whole else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, kind)
            or not math.isfinite(value)
            or value < minimum
        ):
            from ._exceptions import InvalidParameter

            raise InvalidParameter(
                f"RetryPolicy.{attribute.name} must be a finite "
                f"{'int' if whole else 'number'} >= {minimum}, got {value!r:.60}",
                parameter=attribute.name,
            )

    return check


@attrs.frozen
class RetryPolicy:
    """How `TransientError` failures are retried: bounded, jittered, with a deadline.

    The defaults make at most 5 requests within 30 seconds, waiting about 0.1, 0.2,
    0.4 and 0.8 seconds plus up to 0.5 seconds of jitter between them (from 1 second
    when throttled).  For downloads, *attempts* counts tries in a row that did not
    move the download forward, and *timeout* is the deadline of the whole download.
    """

    #: Tries, the first one included (for downloads: tries in a row without
    #: progress).  ``1`` turns retrying off.
    attempts: int = attrs.field(default=5, validator=_at_least(1))
    #: The first wait, in seconds; each later one doubles it.
    wait_initial: float = attrs.field(default=0.1, validator=_at_least(0))
    #: No single wait is longer than this, in seconds (a server's ``Retry-After`` excepted).
    wait_max: float = attrs.field(default=5.0, validator=_at_least(0))
    #: Up to this many seconds, drawn at random, are added to each wait.
    wait_jitter: float = attrs.field(default=0.5, validator=_at_least(0))
    #: API calls: no retry starts later than this many seconds after the first
    #: attempt began (botocore's timeouts bound the attempt under way).  Downloads:
    #: the deadline of the whole download, transfer included.  None: no deadline.
    timeout: float | None = attrs.field(default=30.0, validator=_at_least(0))
    #: The first wait after `Throttled`, in seconds: the AWS SDKs' throttling base.
    wait_throttled: float = attrs.field(default=1.0, validator=_at_least(0))


#: What downloads use unless told otherwise: the same tries without progress, and an
#: hour for the whole download (a 10 GiB layer at 3 MiB/s).
DOWNLOAD_POLICY = RetryPolicy(timeout=3600.0)


@attrs.define
class RetryBudget:
    """A token bucket shared by every call of one client, as in the AWS SDKs' standard mode.

    A retry costs `retry_cost` tokens (`timeout_cost` after a timeout); a call that
    succeeds gives back what it spent.  When the bucket cannot pay for a retry, the
    failure is raised at once: an endpoint that fails for everyone should not turn
    each of many concurrent calls into ``attempts`` requests.
    """

    capacity: int = 500
    retry_cost: int = 5
    timeout_cost: int = 10
    _tokens: int | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    @property
    def available(self) -> int:
        """Tokens left."""
        return self.capacity if self._tokens is None else self._tokens

    def acquire(self, error: BaseException) -> int:
        """Take the cost of retrying after *error*; return it, or 0 if the bucket cannot pay."""
        cost = self.timeout_cost if isinstance(error, EndpointTimeout) else self.retry_cost
        with self._lock:
            left = self.available
            if left < cost:
                return 0
            self._tokens = left - cost
            return cost

    def refund(self, amount: int) -> None:
        """Give back *amount* tokens (what a call that then succeeded had spent)."""
        if amount:
            with self._lock:
                self._tokens = min(self.capacity, self.available + amount)


class _Testing:
    # A plain class, as _Run: attrs classes cost import time, and neither is public.
    __slots__ = ("attempts", "enabled")

    def __init__(self, enabled: bool = False, attempts: int = 1) -> None:
        self.enabled = enabled
        self.attempts = attempts


_TESTING = _Testing()


@contextlib.contextmanager
def _restoring(previous: _Testing) -> Iterator[None]:
    try:
        yield
    finally:
        _TESTING.enabled, _TESTING.attempts = previous.enabled, previous.attempts


def set_testing(testing: bool, *, attempts: int = 1) -> contextlib.AbstractContextManager[None]:
    """Turn test mode on or off for the whole process.

    In test mode nothing waits between attempts and at most *attempts* tries are
    made (1 by default: no retries), so a test suite that provokes failures does
    not sleep.  Used as a context manager (``with set_testing(True):``), it puts the
    previous setting back on exit.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts!r}")
    previous = _Testing(_TESTING.enabled, _TESTING.attempts)
    _TESTING.enabled = testing
    _TESTING.attempts = attempts
    return _restoring(previous)


def is_testing() -> bool:
    """Return whether test mode is on (see `set_testing`)."""
    return _TESTING.enabled


def effective_attempts(policy: RetryPolicy) -> int:
    """Return the tries *policy* allows, capped by test mode."""
    return min(policy.attempts, _TESTING.attempts) if _TESTING.enabled else policy.attempts


def backoff(policy: RetryPolicy, failures: int, error: BaseException | None = None) -> float:
    """Return the wait after the *failures*-th failure in a row: exponential, jittered, capped.

    Throttling waits from `RetryPolicy.wait_throttled`, and a server's ``Retry-After``
    is honoured when it asks for longer.  Zero in test mode.
    """
    if _TESTING.enabled:
        return 0.0
    base = policy.wait_throttled if isinstance(error, Throttled) else policy.wait_initial
    exponential = base * 2 ** (max(1, failures) - 1)
    jitter = random.uniform(0, policy.wait_jitter)  # noqa: S311 (not cryptographic)
    wait = float(min(policy.wait_max, exponential + jitter))
    asked = getattr(error, "retry_after", None)
    return max(wait, asked) if asked is not None else wait


#: Told, after a try failed, whether that try moved the download forward.
MadeProgress = Callable[[BaseException], bool]


class _Run:
    """One call's retry bookkeeping: what ``stop`` and ``wait`` read."""

    __slots__ = (
        "attempts",
        "budget",
        "deadline",
        "out_of_budget",
        "policy",
        "progressed_at",
        "spent",
    )

    def __init__(
        self, policy: RetryPolicy, budget: RetryBudget | None, deadline: float | None, attempts: int
    ) -> None:
        self.policy = policy
        self.budget = budget
        self.deadline = deadline
        self.attempts = attempts
        #: Attempt number of the last try that moved the download forward (0: none).
        self.progressed_at = 0
        self.spent = 0
        self.out_of_budget = False

    def failures(self, attempt_number: int) -> int:
        """Failed tries in a row without progress, once attempt *attempt_number* failed."""
        return attempt_number - self.progressed_at

    def stop(self, state: tenacity.RetryCallState) -> bool:
        if self.failures(state.attempt_number) >= self.attempts:
            return True
        if self.deadline is not None and time.monotonic() + state.upcoming_sleep > self.deadline:
            return True
        if self.budget is not None:
            assert state.outcome is not None
            cost = self.budget.acquire(state.outcome.exception())  # type: ignore[arg-type]
            self.out_of_budget = cost == 0
            self.spent += cost
            return self.out_of_budget
        return False

    def tenacity_options(self) -> dict[str, Any]:
        import tenacity

        return {
            "stop": self.stop,
            "wait": self.wait,
            "retry": tenacity.retry_if_exception_type(TransientError),
            "before_sleep": log_retry,
            "reraise": True,
        }

    def replay(self, number: int, first: TransientError) -> None:
        """Tenacity's attempt 1 is the one already made: re-raise its error, so that
        attempt numbers, waits and the deadline count it."""
        if number == 1:
            raise first

    def failed(self, number: int, error: TransientError, progress: MadeProgress | None) -> None:
        if progress is not None and progress(error):
            self.progressed_at = number

    def succeeded(self, result: T) -> T:
        if self.budget is not None:
            self.budget.refund(self.spent)
        return result

    def finished(self, exc: ECRError, statistics: dict[str, Any]) -> None:
        """Tell *exc*, the call's last error, how many tries were made (and why no more)."""
        exc.attempts = statistics.get("attempt_number", 1)
        if self.out_of_budget:
            exc.message += (
                "; not retried: this client's retry budget is spent "
                "(too many failures lately across its calls)"
            )

    def wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, DownloadUrlExpired):
            return 0.0  # nothing to wait for: a fresh URL is one call away
        return backoff(self.policy, self.failures(state.attempt_number), error)


def call(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    budget: RetryBudget | None = None,
    progress: MadeProgress | None = None,
    deadline: float | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Return ``attempt()``, retrying `TransientError` as *policy* says.

    *progress*, for downloads, tells whether a failed try moved the transfer forward:
    such a try does not count against ``policy.attempts``.  *deadline* (a
    `time.monotonic` value) defaults to ``policy.timeout`` from now.  Whatever
    escapes is an `ECRError` whose ``attempts`` says how many tries were made; or,
    once *stop* is set (a Ctrl-C or a failed sibling download), `KeyboardInterrupt`
    from the wait between tries, which ends at once rather than when it was due.
    """
    deadline = _deadline(policy, deadline)
    try:
        return attempt()
    except TransientError as exc:
        first = exc
    except ECRError as exc:
        exc.attempts = 1
        raise
    run = _second_try(first, policy, budget, deadline, progress)
    import tenacity  # Deferred: a process that never retries never imports it.

    options = run.tenacity_options()
    if stop is not None:
        options["sleep"] = _sleep_unless(stop)
    machine = tenacity.Retrying(**options)
    try:
        for try_ in machine:
            with try_:
                run.replay(try_.retry_state.attempt_number, first)
                try:
                    result = attempt()
                except TransientError as exc:
                    run.failed(try_.retry_state.attempt_number, exc, progress)
                    raise
                return run.succeeded(result)
    except ECRError as exc:
        run.finished(exc, machine.statistics)
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


async def call_async(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    budget: RetryBudget | None = None,
    progress: MadeProgress | None = None,
    deadline: float | None = None,
) -> T:
    """`call` for a coroutine: the same rules and bookkeeping, with tenacity's async loop."""
    deadline = _deadline(policy, deadline)
    try:
        return await attempt()
    except TransientError as exc:
        first = exc
    except ECRError as exc:
        exc.attempts = 1
        raise
    run = _second_try(first, policy, budget, deadline, progress)
    import tenacity

    machine = tenacity.AsyncRetrying(**run.tenacity_options())
    try:
        async for try_ in machine:
            with try_:
                run.replay(try_.retry_state.attempt_number, first)
                try:
                    result = await attempt()
                except TransientError as exc:
                    run.failed(try_.retry_state.attempt_number, exc, progress)
                    raise
                return run.succeeded(result)
    except ECRError as exc:
        run.finished(exc, machine.statistics)
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _sleep_unless(stop: threading.Event) -> Callable[[float], None]:
    """A wait between tries that ends, by `KeyboardInterrupt`, as soon as *stop* is set:
    a process exits only once its worker threads have, and one waiting out a backoff
    would hold a Ctrl-C for seconds."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise KeyboardInterrupt

    return sleep


def _deadline(policy: RetryPolicy, deadline: float | None) -> float | None:
    if deadline is None and policy.timeout is not None:
        return time.monotonic() + policy.timeout
    return deadline


def _second_try(
    first: TransientError,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    deadline: float | None,
    progress: MadeProgress | None,
) -> _Run:
    """The bookkeeping of a call whose first try failed; raise *first* if none may follow."""
    run = _Run(policy, budget, deadline, effective_attempts(policy))
    if progress is not None and progress(first):
        run.progressed_at = 1
    if run.failures(1) >= run.attempts:
        first.attempts = 1
        raise first
    return run


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
