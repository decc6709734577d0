"""
The ``ecr-layers`` command line's entry point: parse, run the command, and turn any
failure into one line on stderr and its exit status.

Each command lives in its own module, imported only when it runs (start-up time):
``url`` and ``download`` in `ecr_layers._cli_layers`, ``image`` and ``pull`` in
`ecr_layers._cli_images`, ``serve`` in `ecr_layers._cli_serve`, ``demo`` in
`ecr_layers._demo`.  The options and help text are `ecr_layers._cli_parser`'s; the
exit statuses, error lines and printable text `ecr_layers._cli_output`'s; Ctrl-C in
the process `ecr_layers._cli_interrupt`'s.  Imports go one way: this module imports
the others, and none of them imports this one.

`main` is the command line for a program or a test; `console` is the ``ecr-layers``
process (the console script ``_ecr_layers_cli`` and ``python -m ecr_layers``), which
also handles Ctrl-C at any moment and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ._cli_interrupt import CtrlC
from ._cli_output import (
    DEBUG_ENV,
    EXIT_CODES,
    MEANINGS,
    UsageError,
    error_line,
    exit_code,
    printable,
)
from ._cli_parser import PARALLEL_MAX, PARALLEL_MIN
from ._cli_parser import build_parser as _parser

# What the entry point and the tests take from here: the command line's names, so that
# a test of the command line has one module to import.
__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES",
    "MEANINGS",
    "PARALLEL_MAX",
    "PARALLEL_MIN",
    "UsageError",
    "_parser",
    "console",
    "error_line",
    "exit_code",
    "main",
    "printable",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return _run(argv, None)


def console(argv: Sequence[str], *, held: bool = False) -> NoReturn:
    """Be the ``ecr-layers`` process: run the command line with Ctrl-C handled at any
    moment (`CtrlC`; *held*: the console script holds SIGINT blocked), then exit."""
    ctrl_c = CtrlC(held=held)
    status = _run(argv, ctrl_c)
    ctrl_c.over()
    if ctrl_c.interrupted_at is not None:
        # Interrupted: the threads the command stopped are not waited for at exit (one
        # stuck in a call nothing can cut short would hold the process).
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    sys.exit(status)


def _run(argv: Sequence[str] | None, ctrl_c: CtrlC | None) -> int:
    try:
        try:
            if ctrl_c is not None:
                ctrl_c.start()
            _escape_the_unshowable()
            args = _parser().parse_args(argv)
            status = _COMMANDS[args.command](args)
            # Flushed here, not at exit: with a buffered stdout (PYTHONUNBUFFERED unset), a
            # reader that has gone would otherwise surface only as Python's exit status 120.
            if sys.stdout is not None:  # None when started with stdout closed
                sys.stdout.flush()
            return status
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else 0
        except (Exception, KeyboardInterrupt) as exc:
            return _failed(exc, ctrl_c)
    except KeyboardInterrupt as exc:
        # Ctrl-C as the failure above began to be reported: now it is the outcome.
        return _failed(exc, ctrl_c)


def _failed(exc: BaseException, ctrl_c: CtrlC | None) -> int:
    """Report *exc* in one line; return its exit status."""
    if ctrl_c is not None:
        ctrl_c.reporting()
    if isinstance(exc, BrokenPipeError):
        # Whoever read stdout has gone; nothing more can reach it, not even at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if _debugging():
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(error_line(exc), file=sys.stderr, flush=True)
    return exit_code(exc)


def _escape_the_unshowable() -> None:
    # What the terminal's encoding (or PYTHONIOENCODING) cannot show comes out escaped,
    # \xf6 or \u2713, as Python already does on stderr: not a UnicodeEncodeError once
    # the work is done.  A file name of undecodable bytes is such text even in UTF-8.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not stream.closed:
            stream.reconfigure(errors="backslashreplace")


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _cmd_url(args: argparse.Namespace) -> int:
    from ._cli_layers import url

    return url(args)


def _cmd_download(args: argparse.Namespace) -> int:
    from ._cli_layers import download

    return download(args)


def _cmd_image(args: argparse.Namespace) -> int:
    from ._cli_images import image

    return image(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from ._cli_images import export

    return export(args)


def _cmd_cat(args: argparse.Namespace) -> int:
    from ._cli_images import cat

    return cat(args)


def _cmd_pull(args: argparse.Namespace) -> int:
    from ._cli_images import pull

    return pull(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._cli_serve import serve

    return serve(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(quiet=args.quiet)


#: What runs for each command `build_parser` accepts.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "url": _cmd_url,
    "download": _cmd_download,
    "image": _cmd_image,
    "pull": _cmd_pull,
    "export": _cmd_export,
    "cat": _cmd_cat,
    "serve": _cmd_serve,
    "demo": _cmd_demo,
}
