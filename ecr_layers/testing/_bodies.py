"""
Request bodies for the registry API: Content-Length or chunked, streamed, bounded, drained.

A blob body is streamed in pieces (never held whole), a manifest read up to a limit,
and a body no route wants is read and dropped if small, else left unread with the
connection marked to close after the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._errors import RegistryError

if TYPE_CHECKING:
    from ._handler import Handler

PIECE = 1024 * 1024
# A chunk-size line or trailer longer than this is no chunked encoding.
_MAX_LINE = 1024
# An unread body up to this size is read and dropped, keeping the connection usable.
_DRAIN = 1024 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")


class Gone(Exception):
    """The client hung up mid-body: there is no one to answer."""


class Body:
    """One request's body, read at most once."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.read = False
        #: Left unread, too big to drain: the connection closes after the answer.
        self.unread = False

    def declared_length(self) -> int | None:
        """Return the body's Content-Length, None if chunked; 400 for anything else."""
        encoding = self.handler.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise RegistryError("UNSUPPORTED", "only chunked transfer coding is served", 400)
            return None
        lengths = set(self.handler.headers.get_all("Content-Length") or ["0"])
        text = lengths.pop() if len(lengths) == 1 else ""
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise RegistryError("SIZE_INVALID", "Content-Length is not one integer", 400)
        return int(text)

    def pieces(self) -> Iterator[bytes]:
        """Yield the body in pieces of at most a MiB, however it is framed."""
        length = self.declared_length()
        self.read = True
        rfile = self.handler.rfile
        if length is not None:
            while length > 0:
                piece = rfile.read(min(PIECE, length))
                if not piece:
                    raise Gone
                length -= len(piece)
                yield piece
            return
        while True:
            line = rfile.readline(_MAX_LINE)
            if not line:
                raise Gone
            size_text = line.split(b";")[0].strip()
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                self.handler.close_connection = True
                raise RegistryError("SIZE_INVALID", "malformed chunked body", 400)
            size = int(size_text, 16)
            if size == 0:
                break
            while size > 0:
                piece = rfile.read(min(PIECE, size))
                if not piece:
                    raise Gone
                size -= len(piece)
                yield piece
            rfile.readline(_MAX_LINE)
        for _ in range(100):  # trailers, then the blank line
            if rfile.readline(_MAX_LINE).strip() == b"":
                return
        self.handler.close_connection = True
        raise RegistryError("SIZE_INVALID", "malformed chunked body", 400)

    def read_at_most(self, limit: int) -> bytes:
        length = self.declared_length()
        if length is not None and length > limit:
            raise RegistryError(
                "MANIFEST_INVALID",
                f"manifest of {length} bytes is over ECR's limit of {limit} bytes",
                413,
            )
        data = bytearray()
        for piece in self.pieces():
            data += piece
            if len(data) > limit:
                self.handler.close_connection = True
                raise RegistryError(
                    "MANIFEST_INVALID",
                    f"manifest is over ECR's limit of {limit} bytes",
                    413,
                )
        return bytes(data)

    def drain(self) -> None:
        """Read and drop a body no route wants, so the connection stays in step."""
        if self.read:
            return
        try:
            length = self.declared_length()
        except RegistryError:
            self.handler.close_connection = True
            return
        if length is None or length > _DRAIN:
            self.handler.close_connection = self.unread = True
            return
        self.read = True
        if length and len(self.handler.rfile.read(length)) < length:
            raise Gone
