"""
What the command line prints for a failure, and the status it exits with.

Every failure prints one line on stderr and exits with the status `EXIT_CODES` gives
for its kind.  The line never carries a URL's secrets (`redact_url`) nor a control
character (a server's text could hold terminal escapes).  Only an unexpected
exception, a bug, exits 1, naming its class but not its message (which may hold a
URL); ``ECR_LAYERS_DEBUG=1`` adds its traceback.

This module imports no other part of the command line, so that every part of it
(the parser, each command, the entry point) can import this one.
"""

from __future__ import annotations

import errno
import os
import re

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
    UnsafeLayer,
    UnsupportedDigest,
    UpstreamAccessDenied,
)
from ._url import redact_url

__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES",
    "MEANINGS",
    "UsageError",
    "error_line",
    "exit_code",
    "printable",
    "without_controls",
]


class UsageError(Exception):
    """The command line itself is wrong: an unknown option, a missing or malformed argument."""


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
    (UnsafeLayer, 3),  # a layer that cannot be applied is unreadable, not corrupt
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


def without_controls(text: str) -> str:
    """Return *text* with its control characters taken out, and nothing else changed."""
    return _CONTROL.sub("", text)


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
