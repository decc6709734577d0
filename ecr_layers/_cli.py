"""
The ``ecr-layers`` command line's entry point: parse, run the command, and turn any
failure into one line on stderr and its exit status.

Each command lives in its own module, imported only when it runs (start-up time):
``url`` and ``download`` in `ecr_layers._cli_layers`, ``image`` and ``pull`` in
`ecr_layers._cli_images`, ``demo`` in `ecr_layers._demo`; ``serve`` is still here.
The options and help text are `ecr_layers._cli_parser`'s; the exit statuses, error
lines and printable text `ecr_layers._cli_output`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from .testing import LocalECR, SeededImage

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
    "error_line",
    "exit_code",
    "main",
    "printable",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
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
        if isinstance(exc, BrokenPipeError):
            # Whoever read stdout has gone; nothing more can reach it, not even at exit.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if _debugging():
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        print(error_line(exc), file=sys.stderr, flush=True)
        return exit_code(exc)


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


def _cmd_pull(args: argparse.Namespace) -> int:
    from ._cli_images import pull

    return pull(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .testing import LocalECR

    try:
        ecr = LocalECR(host=args.host, port=args.port, storage_dir=args.storage_dir)
    except socket.gaierror as exc:
        raise UsageError(
            f"ecr-layers serve: error: argument --host: cannot listen on {args.host!r}: "
            f"{exc.strerror}"
        ) from exc
    except OSError as exc:
        if exc.filename is None:
            exc.add_note(f"cannot listen on {args.host}:{args.port}")
        else:
            exc.add_note("cannot use --storage-dir")
        raise
    if args.latency:
        ecr.faults.add_latency(args.latency)
    ecr.faults.bandwidth = args.bandwidth
    # Ctrl-C is how serve is meant to end, whenever it comes: exit 0.
    with contextlib.suppress(KeyboardInterrupt), ecr:
        _print_banner(ecr, ecr.seed_demo_image() if args.seed else None)
        while True:
            time.sleep(3600)
    return 0


def _print_banner(ecr: LocalECR, seeded: SeededImage | None) -> None:
    def say(text: str = "") -> None:
        print(text, flush=True)

    say(f"# LocalECR serving on {ecr.endpoint_url}, region {ecr.region_name}; Ctrl-C stops it.")
    say("# To use it from another shell, paste these lines (LocalECR's fixed test")
    say("# credentials, not secrets; requests signed with any others are refused):")
    for name, value in ecr.env().items():
        say(f"export {name}={shlex.quote(value)}")
    if seeded is None:
        say("# (serve --seed also pushes a demo image to try the commands on)")
        return
    repository, tag = shlex.quote(seeded.repository_name), seeded.tag or "latest"
    say(
        f"# Seeded {seeded.repository_name}:{tag}, an index of {', '.join(seeded.manifests)}; "
        "their layers:"
    )
    for platform, manifest in seeded.manifests.items():
        for layer in manifest.layers:
            say(f"#   {platform:<16} {layer.digest}")
    digests = [layer.digest for layer in next(iter(seeded.manifests.values())).layers]
    say("# Then try:")
    say(f"ecr-layers image {repository} {tag}")
    say(f"ecr-layers pull {repository} {tag} -o ./layout")
    say(f"ecr-layers url {repository} {digests[0]}")
    say(f"ecr-layers download {repository} {digests[-1]} -o .")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(quiet=args.quiet)


#: What runs for each command `build_parser` accepts.
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "url": _cmd_url,
    "download": _cmd_download,
    "image": _cmd_image,
    "pull": _cmd_pull,
    "serve": _cmd_serve,
    "demo": _cmd_demo,
}
