"""
The ``ecr-layers`` command line: ``url``, ``download``, ``serve`` and ``demo``.

Errors print one line (class, code, message, request id) with no traceback and no
URL secret, and exit with a code per kind of failure (see `EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ._exceptions import (
    AccessDenied,
    CredentialsError,
    DownloadError,
    ECRError,
    InvalidParameter,
    LayerInaccessible,
    LayersNotFound,
    RepositoryNotFound,
    TransientError,
    UnableToGetUpstreamLayer,
)
from ._url import redact_url

#: Exit status per kind of failure, most specific first.  Documented in the README.
EXIT_CODES: tuple[tuple[type[ECRError], int], ...] = (
    (InvalidParameter, 2),
    (LayersNotFound, 3),
    (LayerInaccessible, 3),
    (RepositoryNotFound, 3),
    (UnableToGetUpstreamLayer, 3),
    (AccessDenied, 4),
    (CredentialsError, 4),
    (TransientError, 5),
    (DownloadError, 6),
    (ECRError, 1),
)

_URL = re.compile(r"https?://[^\s'\"<>]+")


def exit_code(exc: ECRError) -> int:
    """Return the documented exit status for *exc*."""
    return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))


def error_line(exc: ECRError) -> str:
    """Return the one line the CLI prints for *exc*, with any URL redacted."""
    message = _URL.sub(lambda m: redact_url(m.group()), exc.message or "(no message)")
    line = f"ecr-layers: {type(exc).__name__} ({exc.code}): {message}"
    if exc.request_id:
        line += f" [request id {exc.request_id}]"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except ECRError as exc:
        print(error_line(exc), file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


def _client(args: argparse.Namespace) -> Any:
    from ._client import LayerClient

    return LayerClient(
        endpoint_url=args.endpoint_url, region_name=args.region, profile_name=args.profile
    )


def _cmd_url(args: argparse.Namespace) -> int:
    url = _client(args).get_layer_url(args.repository, args.digest, registry_id=args.registry_id)
    if args.json:
        expires = url.expires_at.isoformat() if url.expires_at else None
        doc = {
            "downloadUrl": url.download_url,
            "layerDigest": url.layer_digest,
            "expiresAt": expires,
        }
        print(json.dumps(doc))
    else:
        print(url.download_url)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    client = _client(args)
    destination = args.output if args.output is not None else "."
    bar = _progress_bar(quiet=args.quiet, stream=sys.stderr)
    try:
        path = client.download_layer(
            args.repository,
            args.digest,
            destination,
            registry_id=args.registry_id,
            progress=bar.update if bar is not None else None,
            parallel=args.parallel,
            verify=not args.no_verify,
        )
    finally:
        if bar is not None:
            bar.close()
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


def _progress_bar(*, quiet: bool, stream: TextIO) -> _Bar | None:
    # A bar only for a person watching a terminal; never in logs or pipes.
    if quiet or not stream.isatty():
        return None
    try:
        return _Bar(stream)
    except ImportError:  # tqdm is the optional 'cli' extra
        return None


def _cmd_serve(args: argparse.Namespace) -> int:
    from .testing import LocalECR

    ecr = LocalECR(host=args.host, port=args.port, storage_dir=args.storage_dir)
    if args.latency:
        ecr.faults.add_latency(args.latency)
    ecr.faults.bandwidth = args.bandwidth
    print(f"LocalECR serving on {ecr.endpoint_url}", flush=True)
    for name, value in ecr.env().items():
        print(f"export {name}={value}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        ecr.serve_forever()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(quiet=args.quiet)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecr-layers",
        description="Get, and safely download, Amazon ECR image layers.",
        epilog="Exit status: 0 ok, 2 bad input, 3 not found or inaccessible, "
        "4 credentials or access, 5 transient or server error, 6 download failed "
        "verification, 1 any other error.",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint-url", help="ECR endpoint (default: the AWS configuration)")
    common.add_argument("--region", help="AWS region")
    common.add_argument("--profile", help="AWS profile from the shared configuration")
    common.add_argument("--registry-id", help="12-digit registry (account) id")

    url = sub.add_parser("url", parents=[common], help="print a layer's pre-signed download URL")
    url.add_argument("repository")
    url.add_argument("digest")
    url.add_argument("--json", action="store_true", help="print a JSON object")
    url.set_defaults(func=_cmd_url)

    dl = sub.add_parser("download", parents=[common], help="download and verify a layer")
    dl.add_argument("repository")
    dl.add_argument("digest")
    dl.add_argument("-o", "--output", help="file or directory (default: current directory)")
    dl.add_argument("--parallel", type=int, default=None, help="connections for ranged download")
    dl.add_argument("--no-verify", action="store_true", help="skip digest verification")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no output")
    dl.set_defaults(func=_cmd_download)

    serve = sub.add_parser("serve", help="run a LocalECR endpoint until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    serve.add_argument("--storage-dir", help="keep layers in this directory, not memory")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to each API call")
    serve.add_argument("--bandwidth", type=int, help="bytes per second per download connection")
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="push, look up, download and verify on a LocalECR")
    demo.add_argument("-q", "--quiet", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    return parser
