"""
The ``ecr-layers`` command line: ``url``, ``download``, ``image``, ``pull``, ``serve``
and ``demo`` (the image commands are `ecr_layers._cli_images`').

Every failure prints one line on stderr and exits with the status `EXIT_CODES` gives
for its kind.  The line never carries a URL's secrets (`redact_url`) nor a control
character (a server's text could hold terminal escapes).  Only an unexpected
exception, a bug, exits 1, naming its class but not its message (which may hold a
URL); ``ECR_LAYERS_DEBUG=1`` adds its traceback.  The options and help text are
`ecr_layers._cli_parser`'s; this module runs the command the parser names.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from ._cli_parser import PARALLEL_MAX, PARALLEL_MIN, UsageError
from ._cli_parser import build_parser as _parser
from ._exceptions import (
    AccessDenied,
    ConfigurationError,
    CredentialsError,
    DestinationError,
    DigestMismatch,
    DownloadError,
    ECRError,
    ImageError,
    InvalidParameter,
    InvalidResponse,
    KmsError,
    LayerInaccessible,
    LayersNotFound,
    RepositoryNotFound,
    TransientError,
    UnableToGetUpstreamLayer,
    UnknownError,
    UnsupportedDigest,
    UpstreamAccessDenied,
)
from ._url import redact_url

if TYPE_CHECKING:
    from ._client import LayerClient
    from .testing import LocalECR, SeededImage

# What the entry point, the parser's help and the tests take from here; the parser's
# names are re-exported so that the command line has one module to import.
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


#: Exit status per kind of failure, most specific first (a test holds it to that order,
#: and the README's table and ``--help`` to its contents).  0 is success; anything
#: not listed is a bug in ecr-layers and exits 1.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, 2),
    (InvalidParameter, 2),
    (UnsupportedDigest, 2),
    (ConfigurationError, 2),
    (DigestMismatch, 6),
    (DestinationError, 7),
    (LayersNotFound, 3),
    (LayerInaccessible, 3),
    (RepositoryNotFound, 3),
    (UnableToGetUpstreamLayer, 3),
    (AccessDenied, 4),
    (CredentialsError, 4),
    (KmsError, 4),
    (UpstreamAccessDenied, 4),
    (TransientError, 5),
    (ImageError, 3),
    (DownloadError, 5),
    (InvalidResponse, 5),
    (UnknownError, 5),
    (OSError, 7),
    (KeyboardInterrupt, 130),
)

#: What each exit status means, as ``--help`` shows it.
MEANINGS: dict[int, str] = {
    0: "success",
    1: "a bug in ecr-layers (an unexpected exception)",
    2: "bad input or configuration",
    3: "layer, image, platform or repository not found, inaccessible or unreadable",
    4: "credentials missing or refused, or access denied",
    5: "transient, server or download-host failure (after retries)",
    6: "the download failed verification",
    7: "local file-system error (destination, disk full, port in use)",
    130: "interrupted (Ctrl-C)",
}

#: Set to anything but "" or "0", it adds a bug's traceback to its one line.
DEBUG_ENV = "ECR_LAYERS_DEBUG"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a
# terminal shows: nothing a server or a file name sends reaches the screen raw.
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+"
)
_MAX_LINE = 1000


def exit_code(exc: BaseException) -> int:
    """Return the documented exit status for *exc*: 1 for anything `EXIT_CODES` lacks."""
    return next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), 1)


def printable(text: str) -> str:
    """Return *text* on one line, without control characters, and with URLs redacted."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    # Redacted after stripping, so that no control character can hide a URL from the regex.
    return _URL.sub(lambda m: redact_url(m.group()), text)


def error_line(exc: BaseException) -> str:
    """Return the one line the command line prints for *exc*."""
    if isinstance(exc, ECRError):
        name = type(exc).__name__
        code = f" ({exc.code})" if exc.code and exc.code != name else ""
        line = f"ecr-layers: {name}{code}: {exc.message or '(no message)'}"
        if isinstance(exc, UnsupportedDigest):
            line = line.replace("verify=False", "--no-verify")  # the Python API's spelling
            if "--no-verify" not in line:
                line += "; add --no-verify to download it without verification"
        if exc.request_id:
            line += f" [request id {exc.request_id}]"
    elif isinstance(exc, UsageError):
        line = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        line = "ecr-layers: interrupted"
    elif isinstance(exc, OSError):
        line = _os_error_line(exc)
    else:
        # The message is not shown: it may quote a URL with its signature.
        line = (
            f"ecr-layers: internal error {type(exc).__name__}: this is a bug in ecr-layers, "
            f"please report it; rerun with {DEBUG_ENV}=1 for a traceback"
        )
    line = printable(line)
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


def _os_error_line(exc: OSError) -> str:
    code = f" ({errno.errorcode.get(exc.errno, exc.errno)})" if exc.errno is not None else ""
    parts = [*getattr(exc, "__notes__", ()), exc.strerror or str(exc) or "(no message)"]
    if exc.filename is not None:
        parts.append(repr(os.fsdecode(exc.filename)))
    return f"ecr-layers: {type(exc).__name__}{code}: {': '.join(parts)}"


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
        print(_CONTROL.sub("", url.download_url))
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
