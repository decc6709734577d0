"""
Ctrl-C in the ``ecr-layers`` process: whenever it comes, one line and exit 130, within
a second.

- While the command line loads, the console script (``_ecr_layers_cli``) keeps SIGINT
  blocked; `CtrlC.start` unblocks it once the handler is in place, and a Ctrl-C that
  came meanwhile is raised there, inside the entry point's error handling.
- The first Ctrl-C raises KeyboardInterrupt in the main thread: the command stops its
  downloads and removes what it wrote.  Another one would cut that cleanup short, so
  it is not raised.
- If the command is still stopping half a second later (it waits for a thread that
  nothing can interrupt), KeyboardInterrupt is raised once more, into that wait; at
  0.9 s the process ends regardless, with the line and 130, waiting for no thread.
- Once the outcome is being reported, Ctrl-C changes nothing: that line is the answer.

Only the console script's process is handled so; `ecr_layers._cli.main`, called in a
program or a test, leaves the signal alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import FrameType

from ._cli_output import error_line, exit_code

__all__ = ["CtrlC"]

#: After the first Ctrl-C: when a command still stopping is interrupted again, and when
#: the process ends anyway.
NUDGE_AFTER = 0.5
END_AFTER = 0.9


class CtrlC:
    """SIGINT for one run of the command line; see the module's docstring."""

    def __init__(self, *, held: bool) -> None:
        #: SIGINT is blocked in this thread, by the console script: ours to unblock.
        self._held = held
        #: When the first Ctrl-C came (``time.monotonic``); None before.
        self.interrupted_at: float | None = None
        self._reporting = False
        self._nudging = False
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
            threading.Thread(target=self._watch, name="ecr-layers-ctrl-c", daemon=True).start()
            if not self._reporting:
                raise KeyboardInterrupt
        elif self._nudging and not self._reporting:
            self._nudging = False
            raise KeyboardInterrupt
        # Otherwise the command is already stopping: let it finish its cleanup.

    def _watch(self) -> None:
        if self._over.wait(NUDGE_AFTER):
            return
        if hasattr(signal, "pthread_kill") and not self._reporting:
            # A signal of its own, to the main thread: it ends a blocked wait there,
            # which a flag alone (_thread.interrupt_main) would not.
            self._nudging = True
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        if self._over.wait(END_AFTER - NUDGE_AFTER):
            return
        interrupted = KeyboardInterrupt()
        if not self._reporting:
            line = error_line(interrupted) + "\n"
            with contextlib.suppress(OSError):  # stderr closed
                os.write(2, line.encode("ascii", "backslashreplace"))
        os._exit(exit_code(interrupted))
