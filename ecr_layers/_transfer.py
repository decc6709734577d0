"""
The transfer's rules, independent of how bytes arrive: the inputs' checks, which
ranges to fetch and over how many connections, what a 200/206 answer says, and how
slow is too slow (`Pace`).  Where the bytes go is `_sink`'s, the file `_landing`'s.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import attrs

from ._exceptions import (
    EndpointTimeout,
    InvalidParameter,
    LayerRef,
    ServerError,
    UnsupportedDigest,
)

#: Bytes per ranged request in a parallel download (and so, per connection in memory).
CHUNK_SIZE = 4 * 1024 * 1024
#: When the caller does not say, layers at least this large are fetched over
#: `AUTO_CONNECTIONS` connections, unless the first chunk arrived faster than
#: `AUTO_FAST_ENOUGH` bytes/s: on a fast link one stream is CPU-bound and more
#: connections only add work; on a capped one they multiply the rate.
AUTO_THRESHOLD = 64 * 1024 * 1024
AUTO_CONNECTIONS = 4
AUTO_FAST_ENOUGH = 200 * 1024 * 1024
#: ``parallel`` may be 1 to this many connections.
MAX_CONNECTIONS = 16
#: A connection slower than MIN_RATE bytes/s over MIN_RATE_WINDOW seconds is cut.
MIN_RATE = 1024
MIN_RATE_WINDOW = 30.0

_HASHES = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
_LENGTH = re.compile(r"[0-9]{1,20}")

Progress = Callable[[int, "int | None"], None]


def check_connections(value: object, parameter: str, *, none_too: bool = False) -> int:
    """Return *value* if it is a connection count, 1 to `MAX_CONNECTIONS`; else raise
    `InvalidParameter` naming *parameter* (saying None is allowed too, if *none_too*)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONNECTIONS:
        return value
    allowed = f"{'None or ' if none_too else ''}1 to {MAX_CONNECTIONS}"
    raise InvalidParameter(f"{parameter} must be {allowed}, got {value!r}", parameter=parameter)


def check_bool(value: object, parameter: str) -> bool:
    """Return *value* if it is a bool; else raise `InvalidParameter` naming *parameter*
    (1, "yes" and None are not: a flag given the wrong thing is a mistake to say)."""
    if not isinstance(value, bool):
        raise InvalidParameter(f"{parameter} must be a bool", parameter=parameter)
    return value


def check_progress(progress: object) -> None:
    """Raise `InvalidParameter` unless *progress* is None or callable."""
    if progress is not None and not callable(progress):
        raise InvalidParameter("progress must be callable", parameter="progress")


def check_digest(digest: str, layer: LayerRef) -> str:
    """Return the hash algorithm of an OCI digest this library can verify.

    Raises `UnsupportedDigest` for anything but ``sha256`` with 64 and ``sha512`` with
    128 lowercase hex characters: the API's pattern admits much more (``sha256:abc``,
    ``X.Y:ab``), and such a digest cannot be checked against the bytes.
    """
    algorithm, _, encoded = digest.partition(":")
    size = _HASHES.get(algorithm)
    if size is None or len(encoded) != size or not _HEX.fullmatch(encoded):
        raise UnsupportedDigest(
            f"cannot verify {digest[:80]!r}: only sha256 (64) and sha512 (128) lowercase hex "
            "digests can be verified; a download without verification must be asked for",
            layer=layer,
        )
    return algorithm


def parse_range(status: int, headers: Mapping[str, str], start: int, layer: LayerRef) -> int | None:
    """Return the body's total size from a 200/206 answer's headers (None if unknown).

    Raises `ServerError` if a 206 is not for the range that starts at *start*.
    """
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "") or "")
        if match is None or int(match[1]) != start:
            raise ServerError("the download host sent the wrong byte range", layer=layer)
        return int(match[3]) if match[3] != "*" else None
    length = headers.get("Content-Length")
    # Not str.isdigit: it admits "²", which int() refuses.
    return int(length) if length is not None and _LENGTH.fullmatch(length) else None


def connections_for(total: int, done: int, seconds: float, parallel: int | None) -> int:
    """Return how many connections should fetch the rest, after a first chunk."""
    if parallel is not None:
        return parallel
    rate = done / max(seconds, 1e-6)
    return AUTO_CONNECTIONS if total >= AUTO_THRESHOLD and rate < AUTO_FAST_ENOUGH else 1


def ranges(start: int, total: int) -> Iterator[tuple[int, int]]:
    """Yield [start, end) spans of `CHUNK_SIZE` covering [start, total)."""
    for offset in range(start, total, CHUNK_SIZE):
        yield offset, min(offset + CHUNK_SIZE, total)


@attrs.define
class Pace:
    """One connection's bounds: the minimum rate, the deadline, and cancellation."""

    layer: LayerRef
    deadline: float | None
    cancelled: threading.Event
    floor: int = MIN_RATE
    window: float = MIN_RATE_WINDOW
    _since: float = attrs.field(factory=time.monotonic)
    _count: int = 0
    #: The error that cut this connection for being too slow, if one did.
    slow: EndpointTimeout | None = None

    def check(self, received: int) -> None:
        """Account for *received* bytes; raise if the connection must stop."""
        now = time.monotonic()
        self._count += received
        if self.cancelled.is_set():
            raise KeyboardInterrupt
        if self.deadline is not None and now > self.deadline:
            raise EndpointTimeout("the download did not finish by its deadline", layer=self.layer)
        if now - self._since >= self.window:
            if self._count < self.floor * self.window:
                self.slow = EndpointTimeout(
                    f"the download ran below {self.floor} bytes/s for {self.window:g} s",
                    layer=self.layer,
                )
                raise self.slow
            self._since, self._count = now, 0

    def count(self, received: int) -> None:
        """Account for *received* bytes without checking: the next `check` judges them."""
        self._count += received

    def idle(self, seconds: float) -> None:
        """Leave *seconds* out of the rate: time a stream's consumer spent between reads."""
        self._since += seconds
