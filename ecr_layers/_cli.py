"""
The ``ecr-layers`` command line: ``url``, ``download``, ``image``, ``pull``, ``serve``
and ``demo`` (the image commands are `ecr_layers._cli_images`').

Every failure prints one line on stderr and exits with its status: the statuses,
error lines and printable text are `ecr_layers._cli_output`'s, the options and help
text `ecr_layers._cli_parser`'s; this module runs the command the parser names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from ._cli_output import (
    DEBUG_ENV,
    EXIT_CODES,
    MEANINGS,
    UsageError,
    error_line,
    exit_code,
    printable,
    without_controls,
)
from ._cli_parser import PARALLEL_MAX, PARALLEL_MIN
from ._cli_parser import build_parser as _parser

if TYPE_CHECKING:
    from ._client import LayerClient
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


def _client(args: argparse.Namespace) -> LayerClient:
    from ._client import LayerClient

    return LayerClient(
        endpoint_url=args.endpoint_url, region_name=args.region, profile_name=args.profile
    )


def _cmd_url(args: argparse.Namespace) -> int:
    with _client(args) as client:
        url = client.get_layer_url(args.repository, args.digest, registry_id=args.registry_id)
    if args.json:
        expires = url.expires_at.isoformat() if url.expires_at else None
        doc = {
            "downloadUrl": url.download_url,
            "layerDigest": url.layer_digest,
            "expiresAt": expires,
        }
        print(json.dumps(doc))  # ensure_ascii: control characters come out escaped
    else:
        # Printing the URL, secrets and all, is this command's purpose; only what a
        # terminal would act on is taken out.
        print(without_controls(url.download_url))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    destination = args.output if args.output is not None else "."
    with _client(args) as client, progress_bar(args) as progress:
        path = client.download_layer(
            args.repository,
            args.digest,
            destination,
            registry_id=args.registry_id,
            progress=progress,
            parallel=args.parallel,
            verify=not args.no_verify,
        )
    if not args.quiet:
        print(path)
    return 0


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


def _cmd_image(args: argparse.Namespace) -> int:
    from ._cli_images import image

    return image(args)


def _cmd_pull(args: argparse.Namespace) -> int:
    from ._cli_images import pull

    return pull(args)


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
