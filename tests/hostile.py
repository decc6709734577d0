"""Small misbehaving download hosts on loopback, for the bounds the retry layer promises.

Each serves one body for any GET and misbehaves in one way; each counts the requests
it received, so that tests can assert bounds on the server side.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import attrs
import pytest

import ecr_layers

from .imaging import patch_lookups

Behaviour = Callable[[socket.socket, bytes, "Host"], None]


@attrs.define
class Host:
    """A TCP server on 127.0.0.1 that answers every request with *behaviour*."""

    behaviour: Behaviour
    address: str = "127.0.0.1"
    data: bytes = attrs.Factory(lambda: bytes(range(256)) * 4096)  # 1 MiB
    requests: int = 0
    #: The peer address of every connection accepted, in the order the kernel queued them.
    peers: list[tuple[str, int]] = attrs.Factory(list)
    _accepted: threading.Condition = attrs.Factory(threading.Condition)
    ranges: list[str | None] = attrs.Factory(list)
    stopping: threading.Event = attrs.Factory(threading.Event)
    _server: socket.socket = attrs.field(init=False)
    _threads: list[threading.Thread] = attrs.Factory(list)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def url(self, query: str = "X-Amz-Signature=SECRETSIG0123456789") -> str:
        return f"http://{self.address}:{self.port}/blob?{query}"

    def start(self) -> Host:
        self._server = socket.create_server((self.address, 0))
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()
        # A connection of its own wakes the accept loop, which then sees it is stopping.
        with contextlib.suppress(OSError), socket.create_connection((self.address, self.port), 5):
            pass
        for thread in self._threads:
            thread.join(5)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self.stopping.is_set():
                conn.close()
                return
            with self._accepted:
                self.peers.append(conn.getpeername()[:2])
                self._accepted.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                request += chunk
            self.requests += 1
            header = next(
                (
                    line.split(b":", 1)[1].strip().decode()
                    for line in request.split(b"\r\n")
                    if line.lower().startswith(b"range:")
                ),
                None,
            )
            self.ranges.append(header)
            with contextlib.suppress(OSError):
                self.behaviour(conn, self.data, self)

    def connections_before_now(self, timeout: float = 10) -> int:
        """Return how many connections were made to this host before this call.

        It connects once itself and waits until the accept loop has taken that
        connection: the kernel queues it after every connection made before, so the
        count is complete, with no sleep and no guess at how long a late one may take.
        """
        with socket.create_connection((self.address, self.port), timeout) as probe:
            mine = probe.getsockname()[:2]
            with self._accepted:
                accepted = self._accepted.wait_for(lambda: mine in self.peers, timeout)
                assert accepted, "the host never accepted the probe"
                return self.peers.index(mine)

    def wait(self, seconds: float) -> None:
        self.stopping.wait(seconds)


def headers_200(data: bytes) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()


def reset_after(count: int) -> Behaviour:
    """Ignore Range, send *count* bytes of the whole body, then reset the connection.

    The reset waits until the client's kernel has every byte: what it has acknowledged
    stays readable after the reset, so the client always gets the *count* bytes first.
    """

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(headers_200(data) + data[:count])
        acknowledged(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return behave


def acknowledged(conn: socket.socket, timeout: float = 10) -> None:
    """Return once the peer has acknowledged every byte sent on *conn* (Linux: the send
    queue is empty), or after *timeout*."""
    import fcntl
    import termios

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [unacknowledged] = struct.unpack("i", fcntl.ioctl(conn, termios.TIOCOUTQ, bytes(4)))
        if not unacknowledged:
            return
        time.sleep(0.001)  # the kernel offers no event for this: a poll, bounded above


def close_after(count: int) -> Behaviour:
    """Ignore Range, send *count* bytes of the whole body, then close the connection
    cleanly (a FIN, not a reset): the client reads an end of file short of the length."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(headers_200(data) + data[:count])
        conn.shutdown(socket.SHUT_WR)

    return behave


def hang_after(count: int) -> Behaviour:
    """Ignore Range, send *count* bytes of the whole body, then send nothing more."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(headers_200(data) + data[:count])
        host.wait(120)

    return behave


def trickle(interval: float) -> Behaviour:
    """Send the whole body's headers, then one byte every *interval* seconds."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(headers_200(data))
        for i in range(len(data)):
            if host.stopping.wait(interval):
                return
            conn.sendall(data[i : i + 1])

    return behave


def nothing(conn: socket.socket, data: bytes, host: Host) -> None:
    """Accept the request and never answer."""
    host.wait(120)


@contextlib.contextmanager
def serving(behaviour: Behaviour, address: str = "127.0.0.1") -> Iterator[Host]:
    host = Host(behaviour, address).start()
    try:
        yield host
    finally:
        host.stop()


def chunked(size: int) -> Behaviour:
    """Answer correctly, but with Transfer-Encoding: chunked, in chunks of *size* bytes."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), size):
            piece = data[i : i + size]
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    return behave


def point_at(
    monkeypatch: pytest.MonkeyPatch, host: Host, url: str | None = None
) -> list[ecr_layers.LayerRef]:
    """Make every URL lookup, of either client, answer with *host*'s URL (or *url*);
    return the layers looked up."""
    looked_up: list[ecr_layers.LayerRef] = []

    def answer(layer: ecr_layers.LayerRef, _: object) -> ecr_layers.LayerUrl:
        looked_up.append(layer)
        return ecr_layers.LayerUrl(url or host.url(), layer.layer_digest)

    patch_lookups(monkeypatch, answer)
    return looked_up


def trickle_head(interval: float) -> Behaviour:
    """Send a status line, then the headers one byte every *interval* seconds, for ever."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not host.stopping.wait(interval):
            conn.sendall(b"X")

    return behave


def continue_flood(interval: float) -> Behaviour:
    """Answer ``100 Continue`` every *interval* seconds, for ever, and never the response."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        while not host.stopping.wait(interval):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    return behave


def trickle_error(interval: float, status: int = 503) -> Behaviour:
    """Answer *status* with a long error body sent one byte every *interval* seconds."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        conn.sendall(f"HTTP/1.1 {status} Oops\r\nContent-Length: 1000000\r\n\r\n".encode())
        while not host.stopping.wait(interval):
            conn.sendall(b"<")

    return behave


def one_byte_per_connection(conn: socket.socket, data: bytes, host: Host) -> None:
    """Honour Range, but send one byte of it and close: every connection moves on."""
    header = host.ranges[-1] or "bytes=0-"
    start = int(header.split("=", 1)[1].split("-", 1)[0])
    conn.sendall(
        f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(data) - start}\r\n"
        f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n\r\n".encode()
        + data[start : start + 1]
    )


# -- hosts that quote the request back (redaction) ---------------------------------------


class _Recording:
    """A connection that keeps the bytes it received, for behaviours that quote them."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.received = conn, b""

    def recv(self, size: int) -> bytes:
        chunk = self.conn.recv(size)
        self.received += chunk
        return chunk

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


@attrs.define
class EchoHost(Host):
    """A `Host` whose behaviours can read the request they answer (see `echo`)."""

    def _serve(self, conn: socket.socket) -> None:
        from typing import cast

        # A stand-in for the socket: everything but recv goes to the real one.
        Host._serve(self, cast(socket.socket, _Recording(conn)))


def echo(render: Callable[[str], str], *, malformed_header: bool = False) -> Behaviour:
    """Answer 503 with the error body ``render(target)``, *target* being the request's
    path and query as received: a host that quotes the request back.  With
    *malformed_header*, the target also comes as a header line without a colon, which
    urllib3 logs with the URL it requested."""

    def behave(conn: socket.socket, data: bytes, host: Host) -> None:
        received: bytes = getattr(conn, "received", b"")
        target = received.split(b" ", 2)[1].decode()
        body = render(target).encode()
        bad = f"GET {target}\r\n" if malformed_header else ""
        # Connection: close, as the host closes it: a client that reused the connection
        # could otherwise send its retry into the close, and that try never arrives here.
        head = (
            f"HTTP/1.1 503 Echo\r\nX-Echo: 1\r\n{bad}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + body)

    return behave


@contextlib.contextmanager
def echoing(behaviour: Behaviour) -> Iterator[Host]:
    host = EchoHost(behaviour).start()
    try:
        yield host
    finally:
        host.stop()


def endless_json(conn: socket.socket, data: bytes, host: Host) -> None:
    """Answer 200 with a chunked JSON body that does not end: 48 MiB of spaces, 1 MiB a
    chunk, then nothing more until the host stops (a client with no cap waits)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n")
    conn.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b" " * (1024 * 1024)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    for _ in range(48):
        conn.sendall(frame)
    host.stopping.wait()
