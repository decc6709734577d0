"""
What LocalECR should get wrong (`Faults`), and what it saw (`Stats`, `Record`).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Literal

import attrs

#: The name each injected fault is recorded under, in `Record.fault` and `Stats.faults`.
#: One list, so the docs can be checked against it.
FaultName = Literal[
    "fail_next",
    "raw_body",
    "drop_connection",
    "expired_url",
    "fail_blob",
    "truncate",
    "corrupt",
    "ignore_range",
    "fail_image",
]


@attrs.frozen
class Failure:
    """An injected API failure: an error response, a raw body, or a dropped connection."""

    code: str = "ServerException"
    status: int = 500
    message: str = "Injected failure"
    #: Sent as the whole body instead of the JSON error (a proxy's HTML page, b"").
    body: bytes | None = None
    #: Close the connection without answering.
    drop_connection: bool = False


@attrs.frozen
class Record:
    """One request as the server saw it."""

    #: ``"api"``, ``"registry"`` (``/v2/``) or ``"blob"``.
    kind: str
    #: The API or registry API operation, or the blob's digest.
    target: str
    #: The HTTP status answered; 0 when the connection was dropped instead.
    status: int
    #: The request's Range header, for blobs.
    range: str | None = None
    #: The injected fault that shaped the answer, if any.
    fault: FaultName | None = None


class Stats:
    """Every request the endpoint answered, for tests to count from the server side.

    Counts are kept for the endpoint's whole life; the individual `records` only
    for the most recent `RECORDS_KEPT` requests, so a long-running ``serve`` does not
    grow without bound.  A request whose client went away before its body arrived
    was never answered and is not counted.
    """

    RECORDS_KEPT = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: deque[Record] = deque(maxlen=self.RECORDS_KEPT)
        self._counts: Counter[tuple[str, str, int, str | None]] = Counter()

    def add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)
            self._counts[record.kind, record.target, record.status, record.fault] += 1

    @property
    def records(self) -> list[Record]:
        """A copy of the recent records, oldest first."""
        with self._lock:
            return list(self._records)

    def count(self, operation: str | None = None, *, status: int | None = None) -> int:
        """Return how many API requests (of *operation*, with *status*) were answered."""
        return self._count("api", operation, status)

    def registry_count(self, operation: str | None = None, *, status: int | None = None) -> int:
        """Return how many registry API (``/v2/``) requests (of *operation*, with *status*)
        were answered; operations are named as in `REGISTRY_OPERATIONS`.
        """
        return self._count("registry", operation, status)

    def blob_count(self, digest: str | None = None, *, status: int | None = None) -> int:
        """Return how many blob downloads (of *digest*, with *status*) were answered."""
        return self._count("blob", digest, status)

    def faults(self, fault: str | None = None) -> int:
        """Return how many requests an injected fault (of kind *fault*) shaped."""
        with self._lock:
            return sum(
                n
                for (_, _, _, f), n in self._counts.items()
                if f is not None and fault in (None, f)
            )

    def reset(self) -> None:
        """Forget every record and count."""
        with self._lock:
            self._records.clear()
            self._counts.clear()

    def _count(self, kind: str, target: str | None, status: int | None) -> int:
        with self._lock:
            return sum(
                n
                for (k, t, st, _), n in self._counts.items()
                if k == kind and target in (None, t) and status in (None, st)
            )


class Faults:
    """What LocalECR should get wrong, and how often; safe to change while it serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[Failure]] = {}
        self._image_failures: list[tuple[str, str]] = []
        self._latency: dict[str | None, float] = {}
        self._blob_faults: dict[str, int] = {}
        self._blob_status: list[tuple[int, str, str]] = []
        self._truncate_after: int | None = None
        #: Bytes per second per blob connection; None for no cap.
        self.bandwidth: int | None = None
        #: Answer ranged blob requests with the whole blob (200), as some servers do.
        self.ignore_range: bool = False

    def fail_next(
        self,
        operation: str,
        times: int = 1,
        *,
        code: str = "ServerException",
        status: int = 500,
        message: str = "Injected failure",
        body: bytes | None = None,
        drop_connection: bool = False,
    ) -> None:
        """Fail the next *times* calls of *operation* with this error."""
        failure = Failure(code, status, message, body, drop_connection)
        with self._lock:
            self._failures.setdefault(operation, []).extend([failure] * times)

    def fail_next_images(self, code: str, times: int = 1, *, reason: str | None = None) -> None:
        """Make every image the next *times* ``BatchGetImage`` calls ask for a failure of *code*.

        *code* is one of the model's ``ImageFailureCode`` values (``KmsError``,
        ``UpstreamTooManyRequests``...); `ValueError` for any other.
        """
        from ._shapes import image_failure_codes

        codes = image_failure_codes()
        if code not in codes:
            raise ValueError(f"{code!r} is not a BatchGetImage failure code: {', '.join(codes)}")
        with self._lock:
            self._image_failures.extend([(code, reason or "Injected failure")] * times)

    def add_latency(self, seconds: float, operation: str | None = None) -> None:
        """Delay every API call (or only *operation*, or ``"blob"`` downloads) by *seconds*."""
        with self._lock:
            self._latency[operation] = seconds

    def truncate_next_blobs(self, times: int = 1, *, after: int | None = None) -> None:
        """Cut the next *times* blob bodies short, after *after* bytes (default: half)."""
        self._add_blob_fault("truncate", times)
        with self._lock:
            self._truncate_after = after

    def corrupt_next_blobs(self, times: int = 1) -> None:
        """Flip a byte in the next *times* blob bodies (same length, wrong digest)."""
        self._add_blob_fault("corrupt", times)

    def expire_next_urls(self, times: int = 1) -> None:
        """Make the next *times* URLs ``GetDownloadUrlForLayer`` hands out already expired."""
        self._add_blob_fault("expired_url", times)

    def fail_next_blobs(
        self,
        times: int = 1,
        *,
        status: int = 503,
        code: str = "SlowDown",
        message: str = "Injected failure",
    ) -> None:
        """Answer the next *times* blob downloads with an S3-style XML error."""
        with self._lock:
            self._blob_status.extend([(status, code, message)] * times)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._failures.clear()
            self._image_failures.clear()
            self._latency.clear()
            self._blob_faults.clear()
            self._blob_status.clear()
            self._truncate_after = None
            self.bandwidth = None
            self.ignore_range = False

    # -- used by the server ---------------------------------------------------------

    def _add_blob_fault(self, kind: FaultName, times: int) -> None:
        with self._lock:
            self._blob_faults[kind] = self._blob_faults.get(kind, 0) + times

    def take_failure(self, operation: str) -> Failure | None:
        with self._lock:
            queue = self._failures.get(operation)
            return queue.pop(0) if queue else None

    def take_image_failure(self) -> tuple[str, str] | None:
        with self._lock:
            return self._image_failures.pop(0) if self._image_failures else None

    def take_blob_fault(self, kind: FaultName) -> bool:
        with self._lock:
            left = self._blob_faults.get(kind, 0)
            if left:
                self._blob_faults[kind] = left - 1
            return bool(left)

    def take_blob_status(self) -> tuple[int, str, str] | None:
        with self._lock:
            return self._blob_status.pop(0) if self._blob_status else None

    def latency(self, operation: str) -> float:
        with self._lock:
            if operation in self._latency:
                return self._latency[operation]
            # The catch-all delay is for API calls; blobs are delayed only by name.
            return 0.0 if operation == "blob" else self._latency.get(None, 0.0)

    def truncate_after(self, length: int) -> int:
        with self._lock:
            after = self._truncate_after
        return length // 2 if after is None else min(after, length - 1)
