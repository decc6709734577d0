"""
The ``ecr-layers`` console script: Ctrl-C is held back while the command line loads.

This module is outside the ``ecr_layers`` package on purpose: importing anything in
the package first imports the package, botocore and all, a fifth of a second or more,
and a Ctrl-C then would end in Python's traceback.  Here SIGINT is blocked before any
of that; `ecr_layers._cli.console` unblocks it once its handling is in place, and a
Ctrl-C that came meanwhile is acted on then: one line, exit 130.
"""

import signal
import sys


def main() -> None:
    """Run ``ecr-layers`` with this process's arguments, and exit with its status."""
    held = _hold_ctrl_c()
    from ecr_layers._cli import console

    console(sys.argv[1:], held=held)


def _hold_ctrl_c() -> bool:
    """Block SIGINT in this thread; return whether it is ours to unblock."""
    # Blocked, not ignored: the kernel keeps a Ctrl-C pending until it is unblocked.
    if not hasattr(signal, "pthread_sigmask"):
        return False  # Windows: Python's own handling until the handler is in place
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return signal.SIGINT not in before  # blocked already: the parent's choice, kept


if __name__ == "__main__":
    main()
