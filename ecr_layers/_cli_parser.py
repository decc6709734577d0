"""
The ``ecr-layers`` argument parser: options, their type checks, and the help text.

`build_parser` only parses: it stores the chosen command's name in ``command``, and
`ecr_layers._cli` runs it.  A malformed command line raises `UsageError` (one line,
exit 2) instead of argparse's usage dump and ``sys.exit``.  The exit statuses its help
lists are `ecr_layers._cli_output`'s.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._cli_output import DEBUG_ENV, EXIT_CODES, MEANINGS, UsageError

#: ``--parallel``'s range; `download_layer` enforces the same one.
PARALLEL_MIN, PARALLEL_MAX = 1, 16


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line and exit 2 through `main`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Version(argparse.Action):
    # Looked up only when asked for: reading the package metadata costs start-up time.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> NoReturn:
        import ecr_layers

        print(f"ecr-layers {ecr_layers.__version__}")
        parser.exit()


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {text!r}")
    return value


def _epilog() -> str:
    import textwrap

    lines = ["exit status:"]
    for code, meaning in MEANINGS.items():
        names = [cls.__name__ for cls, c in EXIT_CODES if c == code and cls is not UsageError]
        if code == 2:
            names.append("a wrong command line")
        lines.append(f"  {code:<4} {meaning}")
        pad = " " * 7
        lines += textwrap.wrap(", ".join(names), 79, initial_indent=pad, subsequent_indent=pad)
    lines.append(f"Errors print one line on stderr; {DEBUG_ENV}=1 adds a traceback to a bug's.")
    return "\n".join(lines)


#: --parallel's help: the automatic rule is download_layer's (a test holds the
#: figures to the library's constants).
_PARALLEL_HELP = (
    f"connections fetching byte ranges at once, {PARALLEL_MIN}-{PARALLEL_MAX} (default: "
    "automatic: 4 for a layer of 64 MiB or more whose first 4 MiB arrived slower than "
    "200 MiB/s, else 1)"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser; a parsed command line names its command in ``command``."""
    parser = _Parser(
        prog="ecr-layers",
        description="Get, and safely download, Amazon ECR image layers; or run a LocalECR.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connection = _Parser(add_help=False)
    connection.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="ECR API endpoint (default: the AWS configuration's, e.g. AWS_ENDPOINT_URL_ECR)",
    )
    connection.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    connection.add_argument(
        "--profile", metavar="NAME", help="profile from the shared AWS configuration files"
    )
    connection.add_argument(
        "--registry-id",
        metavar="ID",
        help="12-digit registry (account) id (default: your own registry)",
    )
    connection.add_argument("repository", help="repository name, e.g. team/app")
    common = _Parser(add_help=False, parents=[connection])
    common.add_argument("digest", help="layer digest, e.g. sha256:<64 hex digits>")

    url = sub.add_parser(
        "url",
        parents=[common],
        help="print a layer's pre-signed download URL",
        description="Print a layer's pre-signed download URL.  The URL is a bearer "
        "credential (anyone holding it can download the layer) until it expires.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    url.add_argument(
        "--json", action="store_true", help="print a JSON object: downloadUrl, layerDigest, "
        "expiresAt",
    )  # fmt: skip

    dl = sub.add_parser(
        "download",
        parents=[common],
        help="download and verify a layer",
        description="Download a layer; it lands at the destination only once its bytes "
        "hash to its digest.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    dl.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file to write, or a directory to put the layer in (named after its digest); "
        "a trailing slash means a directory, which must exist (default: the current directory)",
    )
    dl.add_argument(
        "--parallel",
        type=_whole_number(PARALLEL_MIN, PARALLEL_MAX),
        metavar="N",
        help=_PARALLEL_HELP,
    )
    dl.add_argument(
        "--no-verify",
        action="store_true",
        help="skip checking the bytes against the digest (needed for a digest that cannot "
        "be verified, such as sha256:abc)",
    )
    dl.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, and do not print the path"
    )

    by_image = _Parser(add_help=False, parents=[connection])
    by_image.add_argument("reference", help="image tag or digest, e.g. v1 or sha256:<64 hex>")
    by_image.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the manifest to take from a multi-platform image, e.g. linux/arm64 "
        "(default: this machine's, as docker picks it)",
    )

    image = sub.add_parser(
        "image",
        parents=[by_image],
        help="show an image's manifest: digest, platform, config and layers",
        description="Show the manifest a tag or digest names, verified against its digest: "
        "its media type, platform (and, for a multi-platform image, every platform it "
        "offers), its config and each layer's digest and size.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    image.add_argument(
        "--json",
        action="store_true",
        help="print a JSON object: repository, reference, digest, mediaType, platform, "
        "indexDigest, platforms, config, layers, totalSize",
    )

    pull = sub.add_parser(
        "pull",
        parents=[by_image],
        help="pull an image's verified blobs into an OCI image layout",
        description="Pull an image into an OCI image layout (oci-layout, index.json, "
        "blobs/) that skopeo, podman and others read as oci:DIR:REFERENCE.  Every blob is "
        "verified before it gets its name; blobs already there are checked, not fetched "
        "again; index.json names the image last, so an interrupted pull changes nothing "
        "it points at.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    pull.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        required=True,
        help="the layout's directory (created if missing; its parent must exist)",
    )
    pull.add_argument(
        "--parallel",
        type=_whole_number(PARALLEL_MIN, PARALLEL_MAX),
        default=4,
        metavar="N",
        help=f"blobs to download at once, {PARALLEL_MIN}-{PARALLEL_MAX} (default: 4)",
    )
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    export = sub.add_parser(
        "export",
        parents=[by_image],
        help="unpack an image's layers into DIR as its root filesystem, without docker",
        description="Apply the image's layers in order, with OCI whiteouts, into DIR (which "
        "must be missing or empty).  Every layer is verified against its digest and its "
        "diff_id; nothing is written outside DIR; device nodes and fifos are skipped and "
        "listed; setuid/setgid bits are dropped.  DIR appears only when all is done.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    export.add_argument("directory", metavar="DIR", help="where the root filesystem goes")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    cat = sub.add_parser(
        "cat",
        parents=[by_image],
        help="write one file of an image to stdout",
        description="Write the bytes of the file at PATH, as the image's root shows it, to "
        "stdout: layers are read from the top down, only as far as the path needs.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    cat.add_argument(
        "path", metavar="PATH", help="the file's path in the image, e.g. /etc/os-release"
    )

    serve = sub.add_parser(
        "serve",
        help="run a LocalECR endpoint until interrupted",
        description="Run LocalECR, an ECR endpoint for tests, until Ctrl-C (exit 0).  It "
        "prints the endpoint, region and credentials to use as export lines.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=_whole_number(0, 65535),
        default=0,
        help="TCP port, 0-65535 (default: 0, any free port)",
    )
    serve.add_argument(
        "--storage-dir",
        metavar="DIR",
        help="keep layers in this directory, not in a temporary one",
    )
    serve.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="added to every API call (default: 0)",
    )
    serve.add_argument(
        "--bandwidth",
        type=_whole_number(1, sys.maxsize),
        metavar="BYTES_PER_SECOND",
        help="cap per download connection (default: none)",
    )
    serve.add_argument(
        "--create-on-push",
        action="store_true",
        help="let a registry API push (skopeo, oras, docker) create its repository, "
        "where ECR answers NAME_UNKNOWN",
    )
    serve.add_argument(
        "--seed",
        action="store_true",
        help="push a demo image and print its repository, layer digests and commands to try",
    )

    demo = sub.add_parser(
        "demo",
        help="look up, download and verify layers on an embedded LocalECR, explained",
        description="Push an image to an embedded LocalECR, look up and download every "
        "layer, and show two typed errors being caught, explaining each step.",
        epilog="Exit status: see 'ecr-layers --help'.",
    )
    demo.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing; the exit status tells"
    )
    return parser
