"""
The one retry layer: `RetryPolicy`, the retry budget, the switches (test mode,
on-retry hooks), and the loop that API calls and downloads both go through.

The first try runs without any retry machinery, so a successful call costs what
the botocore call costs.  Once it has failed with a `TransientError`, tenacity is
imported, and its loop (what ``Retrying.__call__`` does) carries on from there:
the first try's outcome is recorded in a ``RetryCallState`` as attempt 1, never
run again or re-raised into tenacity.  tenacity decides (retry, wait, stop) from
that state and from the attempt number of the last try that moved a download
forward; its ``stop`` and ``wait`` only read.  When it schedules a retry, the loop
pays for it from the budget (the one place tokens are spent) and then calls the
on-retry hooks, the log line among them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
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


@attrs.frozen
class RetryDetails:
    """What an on-retry hook is told: a try failed, and another is scheduled after *wait*.

    One value rather than keyword arguments, so that a field added later does not
    break the hooks already written (as stamina's ``RetryDetails``).
    """

    #: The number of the try that failed, from 1: tenacity's attempt number.
    attempt: int
    #: Why it failed.  Its ``code`` and ``request_id`` identify the failure; its
    #: message may hold more than a log line should.
    error: TransientError
    #: Seconds until the next try (0 in test mode).
    wait: float


def log_retry(details: RetryDetails) -> None:
    """The default hook: one warning line on the ``ecr_layers`` logger per retry."""
    error = details.error
    # Never the URL or the message: only what identifies the failure.
    _log.warning(
        "ecr_layers: attempt %d failed with %s (request id %s); retrying in %.3fs",
        details.attempt,
        error.code,
        error.request_id,
        details.wait,
    )


#: An on-retry hook: called with the `RetryDetails` of each retry scheduled.
RetryHook = Callable[[RetryDetails], None]


class _Config:
    # The process-wide switches.  A plain class, as _Run: attrs classes cost
    # import time, and neither is public.
    __slots__ = ("on_retry", "testing", "testing_attempts")

    def __init__(self) -> None:
        self.testing = False
        self.testing_attempts = 1
        self.on_retry: tuple[RetryHook, ...] = (log_retry,)


_CONFIG = _Config()


class _Restore(contextlib.AbstractContextManager[None]):
    """What a switch returns: used as a context manager, it puts back on exit what
    the switch replaced; called as a plain function, the switch simply stays."""

    __slots__ = ("_put_back",)

    def __init__(self, put_back: Callable[[], None]) -> None:
        self._put_back = put_back

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc_info: object) -> None:
        self._put_back()


def set_testing(testing: bool, *, attempts: int = 1) -> contextlib.AbstractContextManager[None]:
    """Turn test mode on or off for the whole process, at once.

    In test mode nothing waits between attempts and at most *attempts* tries are
    made (1 by default: no retries), so a test suite that provokes failures does
    not sleep.  Called as a plain function, the setting stays until changed.  Used
    as a context manager (``with set_testing(True):``), it puts back on exit the
    setting from before the call, *attempts* included, so nested uses unwind one
    level at a time (as stamina's ``set_testing``).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts!r}")
    previous = (_CONFIG.testing, _CONFIG.testing_attempts)
    _CONFIG.testing, _CONFIG.testing_attempts = bool(testing), attempts

    def put_back() -> None:
        _CONFIG.testing, _CONFIG.testing_attempts = previous

    return _Restore(put_back)


def is_testing() -> bool:
    """Return whether test mode is on (see `set_testing`)."""
    return _CONFIG.testing


def set_on_retry_hooks(
    hooks: Iterable[RetryHook] | None,
) -> contextlib.AbstractContextManager[None]:
    """Set the functions called, for the whole process, each time a retry is scheduled.

    Each hook is called with a `RetryDetails` (the attempt that failed, its error,
    the wait before the next one) after the retry budget has paid for that retry
    and before the wait; a retry that is not made is never reported.  *None* puts
    back the default, a warning line on the ``ecr_layers`` logger; an empty
    iterable turns instrumentation off, that line included.  To add a hook and
    keep the line: ``set_on_retry_hooks([*get_on_retry_hooks(), hook])``.  A hook
    that raises is logged and skipped: instrumentation never fails a download.
    Used as a context manager, it puts the previous hooks back on exit.

    Process-wide rather than a `RetryPolicy` field, as stamina's hooks are:
    metrics, tracing and logging are set up once by the application, and so
    reach every client (the default client and those other libraries make
    included) and every download, whose policy is derived from the API call's.
    """
    chosen = (log_retry,) if hooks is None else tuple(hooks)
    for hook in chosen:
        if not callable(hook):
            raise TypeError(f"an on-retry hook must be callable, got {hook!r:.60}")
    previous = _CONFIG.on_retry
    _CONFIG.on_retry = chosen

    def put_back() -> None:
        _CONFIG.on_retry = previous

    return _Restore(put_back)


def get_on_retry_hooks() -> tuple[RetryHook, ...]:
    """Return the hooks called each time a retry is scheduled (see `set_on_retry_hooks`)."""
    return _CONFIG.on_retry


def effective_attempts(policy: RetryPolicy) -> int:
    """Return the tries *policy* allows, capped by test mode."""
    if _CONFIG.testing:
        return min(policy.attempts, _CONFIG.testing_attempts)
    return policy.attempts


def backoff(policy: RetryPolicy, failures: int, error: BaseException | None = None) -> float:
    """Return the wait after the *failures*-th failure in a row: exponential, jittered, capped.

    Throttling waits from `RetryPolicy.wait_throttled`, and a server's ``Retry-After``
    is honoured when it asks for longer.  Zero in test mode.
    """
    if _CONFIG.testing:
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
    """One call's retries once its first try has failed: tenacity's machine and
    state, and the little the loop itself records (progress, tokens spent)."""

    __slots__ = (
        "attempts",
        "budget",
        "deadline",
        "machine",
        "out_of_budget",
        "policy",
        "progress",
        "progressed_at",
        "spent",
        "state",
    )

    def __init__(
        self,
        first: TransientError,
        policy: RetryPolicy,
        budget: RetryBudget | None,
        deadline: float | None,
        progress: MadeProgress | None,
    ) -> None:
        """Start from the first try's failure; raise it if no retry may follow."""
        self.policy = policy
        self.budget = budget
        self.deadline = deadline
        self.progress = progress
        self.attempts = effective_attempts(policy)
        #: Attempt number of the last try that moved the download forward (0: none).
        self.progressed_at = 1 if progress is not None and progress(first) else 0
        if self.failures(1) >= self.attempts:
            # What `_stop` would say: said here, a call that may not retry (test
            # mode, a client that retries by itself) never imports tenacity.
            first.attempts = 1
            raise first
        self.spent = 0
        self.out_of_budget = False
        import tenacity  # Deferred: a process that never retries never imports it.

        self.machine = tenacity.Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientError),
            reraise=True,
        )
        self.machine.begin()
        # The first try already ran: its outcome is recorded, as tenacity's own
        # loop records each try, so that tenacity decides from attempt 1 on.
        self.state = tenacity.RetryCallState(self.machine, fn=None, args=(), kwargs={})
        self.state.set_exception((type(first), first, first.__traceback__))

    def failures(self, attempt_number: int) -> int:
        """Failed tries in a row without progress, once attempt *attempt_number* failed."""
        return attempt_number - self.progressed_at

    # tenacity's `stop` and `wait` read the state and what the loop recorded;
    # they change nothing (the budget is spent in `scheduled`).

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if self.failures(state.attempt_number) >= self.attempts:
            return True
        return self.deadline is not None and (
            time.monotonic() + state.upcoming_sleep > self.deadline
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, DownloadUrlExpired):
            return 0.0  # nothing to wait for: a fresh URL is one call away
        return backoff(self.policy, self.failures(state.attempt_number), error)

    def failed(self, exc: Exception) -> None:
        """Record a later try's failure, for tenacity to decide on."""
        number = self.state.attempt_number
        if self.progress is not None and isinstance(exc, TransientError) and self.progress(exc):
            self.progressed_at = number
        self.state.set_exception((type(exc), exc, exc.__traceback__))

    def scheduled(self) -> None:
        """A retry tenacity has scheduled: pay for it, tell the hooks, and move the
        state on to the next attempt.  The one place the budget is spent: a retry
        the budget cannot pay for is not made, and its error is raised."""
        state = self.state
        assert state.outcome is not None
        error = state.outcome.exception()
        assert isinstance(error, TransientError)  # tenacity retries nothing else
        if self.budget is not None:
            cost = self.budget.acquire(error)
            if not cost:
                self.out_of_budget = True
                raise error
            self.spent += cost
        details = RetryDetails(state.attempt_number, error, state.upcoming_sleep)
        for hook in _CONFIG.on_retry:
            try:
                hook(details)
            except Exception:
                _log.exception("ecr_layers: on-retry hook %r raised; ignored", hook)
        state.prepare_for_next_attempt()

    def succeeded(self, result: T) -> T:
        if self.budget is not None:
            self.budget.refund(self.spent)
        return result

    def finished(self, exc: ECRError) -> None:
        """Tell *exc*, the call's last error, how many tries were made (and why no more)."""
        exc.attempts = self.state.attempt_number
        if self.out_of_budget:
            exc.message += (
                "; not retried: this client's retry budget is spent "
                "(too many failures lately across its calls)"
            )


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
    run = _Run(first, policy, budget, deadline, progress)
    import tenacity

    sleep = time.sleep if stop is None else _sleep_unless(stop)
    # tenacity's own loop (`Retrying.__call__`), entered with attempt 1 recorded.
    try:
        while True:
            action = run.machine.iter(run.state)
            if isinstance(action, tenacity.DoAttempt):
                try:
                    result: T = attempt()
                except Exception as exc:  # recorded: tenacity says whether to retry it
                    run.failed(exc)
                else:
                    run.state.set_result(result)
            elif isinstance(action, tenacity.DoSleep):
                run.scheduled()
                sleep(action)
            else:
                result = action  # tenacity hands back what the successful try returned
                return run.succeeded(result)
    except ECRError as exc:
        run.finished(exc)
        raise


async def call_async(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    budget: RetryBudget | None = None,
    progress: MadeProgress | None = None,
    deadline: float | None = None,
) -> T:
    """`call` for a coroutine: the same rules, the same engine, and an `asyncio.sleep`.

    tenacity's decisions (retry, wait, stop) are plain functions of its state, so
    the synchronous ``Retrying`` makes them for both; only the wait differs.
    """
    deadline = _deadline(policy, deadline)
    try:
        return await attempt()
    except TransientError as exc:
        first = exc
    except ECRError as exc:
        exc.attempts = 1
        raise
    run = _Run(first, policy, budget, deadline, progress)
    import asyncio

    import tenacity

    try:
        while True:
            action = run.machine.iter(run.state)
            if isinstance(action, tenacity.DoAttempt):
                try:
                    result: T = await attempt()
                except Exception as exc:
                    run.failed(exc)
                else:
                    run.state.set_result(result)
            elif isinstance(action, tenacity.DoSleep):
                run.scheduled()
                await asyncio.sleep(action)
            else:
                result = action  # tenacity hands back what the successful try returned
                return run.succeeded(result)
    except ECRError as exc:
        run.finished(exc)
        raise


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
