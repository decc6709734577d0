"""
What a command that talks to ECR opens from its parsed options: the `LayerClient`
the connection options name, and a progress bar on stderr when a person watches.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ._client import LayerClient

__all__ = ["open_client", "progress_bar"]


def open_client(args: argparse.Namespace) -> LayerClient:
    """Return a client for ``--endpoint-url``, ``--region`` and ``--profile``; close it after."""
    from ._client import LayerClient

    return LayerClient(
        endpoint_url=args.endpoint_url, region_name=args.region, profile_name=args.profile
    )


class _Bar:
    """tqdm, fed with (done, total) callbacks from the download."""

    def __init__(self, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, file=stream, leave=False)
        self._done = 0

    def update(self, done: int, total: int | None) -> None:
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace) -> Iterator[Callable[[int, int | None], None] | None]:
    """Yield the progress callback of a bar on stderr (None without one), closed after."""
    bar = _progress_bar(quiet=args.quiet, stream=sys.stderr)
    try:
        yield bar.update if bar is not None else None
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(*, quiet: bool, stream: TextIO | None) -> _Bar | None:
    # A bar only for a person watching a terminal; never in logs or pipes.
    if quiet or stream is None or not stream.isatty():  # stderr closed: None
        return None
    try:
        return _Bar(stream)
    except ImportError:  # tqdm is the optional 'cli' extra
        return None
