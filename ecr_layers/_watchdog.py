"""
Deadlines that hold while a response's head arrives: a watchdog that shuts a socket.

A socket's read timeout restarts with every byte, so a host that sends a response's
status line and then one header byte a second, a flood of ``100 Continue``, or an
error body a byte at a time, could hold a request for as long as it liked.  Reads
between our own checks cannot see the clock; this thread can.  A request made in a
`Scope` (a download's, or an API call's) has each connection's socket watched while
it waits for the response's head: at the scope's deadline, or when the scope is
cancelled (Ctrl-C, a cancelled task), the socket is shut down, and the blocked read
ends at once.  The caller then raises the typed error for the deadline or the stop.

The connection classes here are urllib3's (the download pool's) and botocore's (its
API pool's), each with only ``getresponse`` watched.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs


@attrs.define(eq=False)
class _Watch:
    deadline: float
    sock: Any
    live: bool = True


class Watchdog:
    """One thread for the process, started on first use, that shuts sockets at their
    deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._ended = 0  # watches ended but still on the heap

    def arm(self, sock: Any, deadline: float) -> _Watch:
        r"""Shut *sock* down at *deadline* (``time.monotonic``), unless `disarm`\ ed first."""
        watch = _Watch(deadline, sock)
        with self._wake:
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ecr-layers-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._wake.notify()  # an earlier deadline than the one it waits for
        return watch

    def disarm(self, watch: _Watch) -> None:
        with self._wake:
            if not watch.live:
                return
            watch.live, watch.sock = False, None
            self._ended += 1
            # Deadlines can be an hour away: ended watches are swept out in bulk rather
            # than left to pile up until their time comes.
            if self._ended > 64 and self._ended * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].live]
                heapq.heapify(self._heap)
                self._ended = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, watch = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                heapq.heappop(self._heap)
                if not watch.live:
                    self._ended -= 1
                    continue
                watch.live, sock, watch.sock = False, watch.sock, None
            shut(sock)


def shut(sock: Any) -> None:
    """End every read blocked on *sock*, in any thread."""
    with contextlib.suppress(OSError, AttributeError):
        sock.shutdown(socket.SHUT_RDWR)


WATCHDOG = Watchdog()


@attrs.define(eq=False)
class Scope:
    """What a request made in it is bound by: a deadline and a way to be stopped.

    A download's scope watches each socket only while it waits for a response's head
    (`waiting`): its connections go back to a pool that other downloads share.  An API
    call's (*hold*) watches each socket until the call ends (`end`): botocore reads
    the whole answer, error bodies included, before it returns.
    """

    deadline: float | None
    hold: bool = False
    stopped: bool = False
    _socks: set[Any] = attrs.Factory(set)
    _held: list[_Watch] = attrs.Factory(list)
    _children: list[Scope] = attrs.Factory(list)
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def stop(self) -> None:
        """Shut every socket waiting for a response in this scope, now and from now on."""
        with self._lock:
            self.stopped = True
            socks, children = list(self._socks), list(self._children)
        for sock in socks:
            shut(sock)
        for child in children:
            child.stop()

    def call(self, deadline: float | None) -> Scope:
        """A scope for one API call made within this one (a download's URL renewal):
        bound by the earlier deadline, and stopped with this one."""
        if self.deadline is not None and (deadline is None or self.deadline < deadline):
            deadline = self.deadline
        child = Scope(deadline, hold=True, stopped=self.stopped)
        with self._lock:
            self._children = [c for c in self._children if c._held or c._socks]
            self._children.append(child)
        return child

    @contextlib.contextmanager
    def waiting(self, sock: Any) -> Iterator[None]:
        """The block in which *sock* waits for (part of) a response: bounded by the scope."""
        if sock is None:  # not connected: nothing to wait on
            yield
            return
        with self._lock:
            if self.stopped:
                shut(sock)
            self._socks.add(sock)
        watch = None if self.deadline is None else WATCHDOG.arm(sock, self.deadline)
        try:
            yield
        finally:
            if watch is not None and self.hold:
                self._held.append(watch)  # until `end`
            elif watch is not None:
                WATCHDOG.disarm(watch)
            if not self.hold:
                with self._lock:
                    self._socks.discard(sock)

    def end(self) -> None:
        """Stop watching the sockets held: the call is over, its connections reusable."""
        for watch in self._held:
            WATCHDOG.disarm(watch)
        self._held.clear()
        self._socks.clear()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    @contextlib.contextmanager
    def current(self) -> Iterator[Scope]:
        """Make this the scope of the requests this thread makes in the block."""
        previous = enter_scope(self)
        try:
            yield self
        finally:
            enter_scope(previous)


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
    """A wait for a response that `Scope` ended: at its deadline, or stopped."""


class Watched:
    """Mixed into a connection class: ``getresponse`` bounded by the thread's `Scope`."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        scope: Scope | None = getattr(_local, "scope", None)
        sock = self.sock
        if scope is None or sock is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        with scope.waiting(sock):
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        if scope.stopped or scope.expired():
            # Cut by us: what http.client made of a head it never finished is no answer.
            response.close()
            raise Cut("the response's head did not arrive by the deadline, or was stopped")
        return response


def watched_pools(http: type[Any], https: type[Any]) -> dict[str, type[Any]]:
    """Subclasses of the connection pools *http* and *https* whose connections are
    `Watched`: for a pool manager's ``pool_classes_by_scheme``."""
    return {
        "http": type(
            http.__name__,
            (http,),
            {"ConnectionCls": type("WatchedHTTPConnection", (Watched, http.ConnectionCls), {})},
        ),
        "https": type(
            https.__name__,
            (https,),
            {"ConnectionCls": type("WatchedHTTPSConnection", (Watched, https.ConnectionCls), {})},
        ),
    }
