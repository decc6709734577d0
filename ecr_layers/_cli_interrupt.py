"""
Ctrl-C in the ``ecr-layers`` process: whenever it comes, one line and exit 130.

- While the command line loads, the console script (``_ecr_layers_cli``) keeps SIGINT
  blocked; `CtrlC.start` unblocks it once the handler is in place, and a Ctrl-C that
  came meanwhile is raised there, inside the entry point's error handling.
- The first Ctrl-C raises KeyboardInterrupt in the main thread: the command stops its
  downloads and removes what it wrote.  Another one would cut that cleanup short, so
  it is not raised.
- Once the outcome is being reported, Ctrl-C changes nothing: that line is the answer.

Only the console script's process is handled so; `ecr_layers._cli.main`, called in a
program or a test, leaves the signal alone.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

__all__ = ["CtrlC"]


class CtrlC:
    """SIGINT for one run of the command line; see the module's docstring."""

    def __init__(self, *, held: bool) -> None:
        #: SIGINT is blocked in this thread, by the console script: ours to unblock.
        self._held = held
        #: When the first Ctrl-C came (``time.monotonic``); None before.
        self.interrupted_at: float | None = None
        self._reporting = False
        self._over = threading.Event()

    def start(self) -> None:
        """Take SIGINT over; a Ctrl-C held back until now raises KeyboardInterrupt here."""
        # Not SIG_IGN (a background job of a script: the shell meant it to be immune),
        # nor a handler of someone's own.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._on_sigint)
        if self._held:
            self._held = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def reporting(self) -> None:
        """The outcome is known and being reported: no KeyboardInterrupt from here on."""
        self._reporting = True

    def over(self) -> None:
        """The outcome is reported: the process is about to exit."""
        self._reporting = True
        self._over.set()

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        if self.interrupted_at is None:
            self.interrupted_at = time.monotonic()
            if not self._reporting:
                raise KeyboardInterrupt
        # Otherwise the command is already stopping: let it finish its cleanup.
