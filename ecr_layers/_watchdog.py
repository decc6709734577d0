"""
Deadlines that hold while a response's head arrives: a watchdog that shuts sockets.

A socket's read timeout restarts with every byte, so a host that sends a response's
status line and then one header byte a second, a flood of ``100 Continue``, or an
error body a byte at a time, could hold a request for as long as it liked.  Reads
between our own checks cannot see the clock; this thread can.  A request made in a
`Scope` (a download's, or an API call's) has its socket in the scope while it waits
for the answer; at the scope's deadline the watchdog shuts those sockets, and when the
scope is stopped (Ctrl-C, a cancelled task) it shuts them itself.  A blocked read then
ends at once, and the caller raises the typed error for the deadline or the stop.

The watchdog looks at the scopes in force a few times a second, not at each request:
a request costs a set insertion, so bounding every API call costs next to nothing.
The connection classes watched are urllib3's (the download pool's) and botocore's (its
API pool's), each with only ``getresponse`` changed.  That is also where an API answer's
size is held to `API_ANSWER_MAX`: botocore reads a whole answer into memory before it
looks at it, so a hostile endpoint could otherwise fill memory until the deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

#: How often the watchdog looks for scopes past their deadline, in seconds: the
#: precision of a deadline that only the watchdog can enforce.
TICK = 0.1
#: Ticks with nothing to watch before the watchdog sleeps until there is.
IDLE_AFTER = 20
#: The largest API answer read, in bytes.  ECR's largest is BatchGetImage's, one
#: manifest of at most 4 MiB per image asked for (these clients ask for one), which
#: JSON escaping can make up to six times longer.
API_ANSWER_MAX = 32 * 1024 * 1024


def shut(sock: Any) -> None:
    """End every read blocked on *sock*, in any thread."""
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)


class Scope:
    """What a request made in it is bound by: a deadline and a way to be stopped.

    A download's scope holds each socket only while it waits for a response's head
    (`waiting`): its connections go back to a pool that other downloads share.  An API
    call's (*hold*) holds each socket until the call ends (`end`): botocore reads the
    whole answer, error bodies included, before it returns.
    """

    __slots__ = (
        "_children",
        "_ended",
        "_lock",
        "_socks",
        "_watched",
        "deadline",
        "hold",
        "late",
        "stopped",
    )

    def __init__(self, deadline: float | None, *, hold: bool = False) -> None:
        self.deadline = deadline
        self.hold = hold
        #: Stopped: its sockets shut, and every socket entering it shut at once.
        self.stopped = False
        #: Past its deadline, as the watchdog found: its sockets shut, the same way.
        self.late = False
        self._socks: set[Any] = set()
        self._children: list[Scope] = []
        self._lock = threading.Lock()
        self._watched = False
        self._ended = False

    def stop(self, *, late: bool = False) -> None:
        """Shut every socket waiting for an answer in this scope, now and from now on:
        stopped, or (*late*) past the deadline."""
        with self._lock:
            if late:
                self.late = True
            else:
                self.stopped = True
            socks, children = list(self._socks), list(self._children)
        for sock in socks:
            shut(sock)
        if not late:
            for child in children:
                child.stop()

    @property
    def cut(self) -> bool:
        """Whether a socket in this scope may have been shut by it."""
        return self.stopped or self.late

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def call(self, deadline: float | None) -> Scope:
        """A scope for one API call made within this one (a download's URL renewal):
        bound by the earlier deadline, and stopped with this one."""
        if self.deadline is not None and (deadline is None or self.deadline < deadline):
            deadline = self.deadline
        child = Scope(deadline, hold=True)
        with self._lock:
            child.stopped = self.stopped
            # Not "has sockets": a child made a moment ago has none yet, and must
            # still be stopped with this scope when its request starts.
            self._children = [c for c in self._children if not c._ended]
            self._children.append(child)
        return child

    def enter(self, sock: Any) -> None:
        """*sock* waits for an answer in this scope, until `leave` (or `end`, if held)."""
        with self._lock:
            self._socks.add(sock)
            stopped = self.stopped or self.late
            watch = not self._watched and self.deadline is not None
            self._watched = self._watched or watch
        if watch:
            WATCHDOG.add(self)
        if stopped:
            shut(sock)

    def leave(self, sock: Any) -> None:
        if not self.hold:
            with self._lock:
                self._socks.discard(sock)

    @contextlib.contextmanager
    def waiting(self, sock: Any) -> Iterator[None]:
        """The block in which *sock* waits for (part of) an answer: bounded by the scope."""
        if sock is None:  # not connected: nothing to wait on
            yield
            return
        self.enter(sock)
        try:
            yield
        finally:
            self.leave(sock)

    def end(self) -> None:
        """The scope's requests are over: its connections are reusable, unwatched."""
        with self._lock:
            self._socks.clear()
            self._ended = True
            watched, self._watched = self._watched, False
        if watched:
            WATCHDOG.discard(self)

    @contextlib.contextmanager
    def current(self) -> Iterator[Scope]:
        """Make this the scope of the requests this thread makes in the block."""
        previous = enter_scope(self)
        try:
            yield self
        finally:
            enter_scope(previous)


class Watchdog:
    """One thread for the process, started on first use and idle while no scope is
    watched, that stops scopes at their deadlines."""

    def __init__(self) -> None:
        self._scopes: set[Scope] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._idle = False

    def add(self, scope: Scope) -> None:
        with self._wake:
            self._scopes.add(scope)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ecr-layers-watchdog", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._idle = False
                self._wake.notify()

    def discard(self, scope: Scope) -> None:
        with self._wake:
            self._scopes.discard(scope)

    def _run(self) -> None:
        quiet = 0  # ticks in a row with nothing to watch
        while True:
            with self._wake:
                if quiet >= IDLE_AFTER and not self._scopes:  # none added since the count
                    # Asleep until a scope is added; awake, it ticks on a while after
                    # the last one ends, so that a run of calls costs no wake-up each.
                    self._idle = True
                    while self._idle:
                        self._wake.wait()
                    quiet = 0
                now = time.monotonic()
                due = [s for s in self._scopes if s.deadline is not None and s.deadline <= now]
                self._scopes.difference_update(due)
                quiet = 0 if self._scopes else quiet + 1
            for scope in due:
                scope.stop(late=True)
            time.sleep(TICK)  # a tick, not a wait for something: nothing wakes it early


WATCHDOG = Watchdog()

_local = threading.local()


def current_scope() -> Scope | None:
    """This thread's scope, if a request made now is bound by one."""
    return getattr(_local, "scope", None)


def enter_scope(scope: Scope | None) -> Scope | None:
    """Make *scope* this thread's (None: none); return the one it replaces."""
    previous: Scope | None = getattr(_local, "scope", None)
    _local.scope = scope
    return previous


class Cut(OSError):
    """A wait for an answer that `Scope` ended: at its deadline, or stopped."""


class AnswerTooLarge(Exception):
    """An API answer longer than `API_ANSWER_MAX`: refused before it is read past it.

    Not an OSError: urllib3 and botocore would take that for a broken connection.
    """


class _Capped:
    """A body's file that refuses to be read past *limit* bytes: for an answer that
    does not say its length (chunked, or delimited by the connection's end)."""

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp = fp
        self._left = limit

    def _count(self, size: int) -> None:
        self._left -= size
        if self._left < 0:
            raise over_the_cap()

    def read(self, *args: Any) -> bytes:
        data: bytes = self._fp.read(*args)
        self._count(len(data))
        return data

    def read1(self, *args: Any) -> bytes:
        data: bytes = self._fp.read1(*args)
        self._count(len(data))
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._fp.readline(*args)
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        size: int = self._fp.readinto(buffer)
        self._count(size)
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


def over_the_cap() -> AnswerTooLarge:
    """The refusal of an API answer read past `API_ANSWER_MAX`."""
    return AnswerTooLarge(f"the API's answer is longer than {API_ANSWER_MAX} bytes")


def stated_over_the_cap(length: str | None) -> AnswerTooLarge | None:
    """The refusal of an API answer whose stated *length* passes `API_ANSWER_MAX`; None
    for one within it, or one that states none (or nonsense: the parser's to refuse)."""
    if length is None or not (length.isascii() and length.isdigit()):
        return None
    if int(length) <= API_ANSWER_MAX:
        return None
    return AnswerTooLarge(
        f"the API's answer says it is {length[:40]} bytes long, more than the "
        f"{API_ANSWER_MAX} read at most"
    )


def _cap(response: Any) -> None:
    """Hold an API answer to `API_ANSWER_MAX`: refuse a longer stated length at once,
    and count an unstated one as it is read.  An answer that ends before its stated
    length is a broken connection, as aiohttp says for the asyncio client."""
    length = response.headers.get("Content-Length")
    refused = stated_over_the_cap(length)
    if refused is not None:
        response.close()
        raise refused
    if length is not None and length.isascii() and length.isdigit():
        # botocore turns urllib3's check off, so a connection closed mid-answer left a
        # truncated body to the parser: {"message": <the first bytes>} for a 200, an
        # InvalidResponse that was not retried.  With it on, the cut is urllib3's
        # ProtocolError, botocore's ConnectionClosedError: transient, retried.
        response.enforce_content_length = True
        return
    raw = getattr(response, "_fp", None)  # http.client's response, under urllib3's
    if raw is not None and getattr(raw, "fp", None) is not None:
        raw.fp = _Capped(raw.fp, API_ANSWER_MAX)


class Watched:
    """Mixed into a connection class: ``getresponse`` bounded by the thread's `Scope`,
    and an API call's answer held to `API_ANSWER_MAX`."""

    sock: Any
    #: An API pool's connection: its answers are held to `API_ANSWER_MAX`.
    api = False

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        scope: Scope | None = getattr(_local, "scope", None)
        sock = self.sock
        if scope is None or sock is None:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        else:
            scope.enter(sock)
            try:
                response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
            finally:
                scope.leave(sock)
            if scope.cut:
                # Cut by us: what http.client made of a head it never finished is no answer.
                response.close()
                raise Cut("the answer's head did not arrive by the deadline, or was stopped")
        if self.api:
            _cap(response)
        return response


def watched_pools(http: type[Any], https: type[Any], *, api: bool = False) -> dict[str, type[Any]]:
    """Subclasses of the connection pools *http* and *https* whose connections are
    `Watched` (and, for an *api* pool, capped): for ``pool_classes_by_scheme``."""
    extra = {"api": True} if api else {}
    return {
        scheme: type(
            pool.__name__,
            (pool,),
            {"ConnectionCls": type(f"Watched{name}", (Watched, pool.ConnectionCls), extra)},
        )
        for scheme, pool, name in (
            ("http", http, "HTTPConnection"),
            ("https", https, "HTTPSConnection"),
        )
    }
