"""
The registry API's blob upload sessions: bytes appended to a file, hashed as they arrive.

A session's bytes never sit in memory: each chunk is written to the session's file
in the store's directory and fed to a running SHA-256, so finishing a session costs
one rename, and a gigabyte layer costs the endpoint no more memory than a small one.
"""

from __future__ import annotations

import hashlib
import pathlib
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from ._errors import RegistryError

if TYPE_CHECKING:
    from hashlib import _Hash

#: Sessions untouched for this many seconds are dropped, their files removed.
DEFAULT_UPLOAD_LIFETIME = 3600.0


@attrs.define(eq=False)
class Session:
    """One upload: its repository, file, size so far and running digest."""

    id: str
    repository: str
    path: pathlib.Path
    touched: float
    size: int = 0
    _hash: _Hash = attrs.field(factory=hashlib.sha256)
    # Held while a chunk is written, so two requests for one session cannot interleave.
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __repr__(self) -> str:
        return f"Session({self.id!r}, repository={self.repository!r}, size={self.size})"

    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"


class Uploads:
    """Upload sessions by id, their files under *directory*; safe to share across threads."""

    def __init__(self, directory: pathlib.Path, *, lifetime: float = DEFAULT_UPLOAD_LIFETIME):
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        #: Seconds a session may sit untouched before it is dropped.
        self.lifetime = lifetime

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def start(self, repository: str) -> Session:
        """Open a new, empty session for *repository*."""
        self.expire()
        session_id = str(uuid.uuid4())
        path = self._dir / session_id
        path.touch()
        session = Session(session_id, repository, path, time.monotonic())
        with self._lock:
            self._sessions[session_id] = session
        return session

    def get(self, repository: str, session_id: str) -> Session:
        """Return the live session *session_id* of *repository*, or raise BLOB_UPLOAD_UNKNOWN."""
        self.expire()
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.repository != repository:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
        return session

    def append(self, session: Session, start: int | None, chunks: Iterable[bytes]) -> None:
        """Append *chunks* to *session*; *start* is the chunk's first offset if the client said.

        A chunk that does not begin where the session ends is refused (416), as the spec
        says: the client must resume from the session's ``Range``.
        """
        with session.lock:
            if start is not None and start != session.size:
                raise RegistryError(
                    "BLOB_UPLOAD_INVALID",
                    f"the chunk starts at byte {start}, but the upload holds {session.size}",
                    416,
                )
            with session.path.open("ab") as f:
                for chunk in chunks:
                    f.write(chunk)
                    session._hash.update(chunk)
                    session.size += len(chunk)
                    session.touched = time.monotonic()

    def finish(self, session: Session, digest: str) -> pathlib.Path:
        """Close *session* and return its file, which holds *digest*; else DIGEST_INVALID.

        A session whose digest is wrong is cancelled, as distribution does: its bytes
        can never become a blob.
        """
        with self._lock:
            self._sessions.pop(session.id, None)
        with session.lock:
            if session.digest() != digest:
                session.path.unlink(missing_ok=True)
                raise RegistryError(
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                    400,
                )
        return session.path

    def cancel(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.path.unlink(missing_ok=True)

    def expire(self) -> int:
        """Drop the sessions untouched for `lifetime` seconds; return how many."""
        cutoff = time.monotonic() - self.lifetime
        with self._lock:
            stale = [s for s in self._sessions.values() if s.touched < cutoff]
            for session in stale:
                del self._sessions[session.id]
        for session in stale:
            session.path.unlink(missing_ok=True)
        return len(stale)
