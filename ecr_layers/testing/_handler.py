"""
LocalECR's HTTP side: the threaded server and the handler for API calls and blob downloads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ._auth import AuthFailure, verify_sigv4
from ._errors import ServiceError
from ._faults import Failure, FaultName, Record
from ._operations import OPERATIONS
from ._registry import Exchange, is_registry_path
from ._s3 import RANGE, error_body, parse_range
from ._shapes import read_request
from ._signing import BLOB_PATH

if TYPE_CHECKING:
    from ._server import LocalECR

#: API request bodies above this many bytes are refused (HTTP 413) before being read.
#: The largest body the service model allows is an ``UploadLayerPart`` of 20 MiB,
#: about 27 MiB once base64-encoded in JSON; this leaves room and bounds what one
#: request can make the server hold.
MAX_API_BODY = 64 * 1024 * 1024

logger = logging.getLogger("ecr_layers.testing")

_TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
_JSON_TYPE = "application/x-amz-json-1.1"
_CHUNK = 256 * 1024
# After refusing a body, read and drop at most this much of it before closing, so
# the client can read the refusal: closing a socket with unread input sends a reset,
# and a reset can destroy the response before the client reads it.
_LINGER_BYTES = 1024 * 1024
_LINGER_SECONDS = 1.0


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    # handle_request() is only called once the socket is readable: never wait in it.
    timeout = 0
    ecr: LocalECR

    def __init__(self, address: tuple[str, int], handler: type[Handler]) -> None:
        # Before binding: a failed bind calls server_close(), which closes these too.
        self._stopping = False
        self._wake_read, self._wake_write = socket.socketpair()
        super().__init__(address, handler)

    def serve_until_stopped(self) -> None:
        """Serve until `stop_serving`.

        socketserver's serve_forever polls for its shutdown flag, so every stop waits
        up to a poll interval (a test suite's teardowns add up); this loop also wakes
        on a byte from `stop_serving`, and stops at once.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self and not self._stopping:
                        self.handle_request()

    def stop_serving(self) -> None:
        """Make `serve_until_stopped` return (from another thread)."""
        self._stopping = True
        self._wake_write.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_read.close()
        self._wake_write.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints every handler exception to stderr.  A client that
        # resets, hangs up or goes quiet mid-request is routine for a test server
        # (retry and timeout tests do it on purpose): say nothing.  Anything else
        # is a LocalECR bug and stays visible, through logging.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        logger.error("LocalECR failed serving %s", client_address, exc_info=error)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm
    # and the client's delayed ACK add 40 ms to every response.
    disable_nagle_algorithm = True
    # An idle keep-alive connection, or a body that stops arriving, is dropped after this long.
    timeout = 60
    server: Server
    server_version = "LocalECR"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Tests and the demo read stats, not an access log.

    # -- API --------------------------------------------------------------------------

    def do_POST(self) -> None:
        if not self._registry():
            self._api()

    def _api(self) -> None:
        ecr = self.server.ecr
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(_TARGET_PREFIX)
        body = self._read_body(operation or "?")
        if body is None:
            return
        answer = OPERATIONS.get(operation) if target.startswith(_TARGET_PREFIX) else None
        if answer is None:
            self._api_error(operation or "?", "UnknownOperationException", "Unknown operation", 400)
            return
        try:
            verify_sigv4(
                method="POST",
                host=self.headers.get("Host", ""),
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                access_key=ecr.access_key_id,
                secret_key=ecr.secret_access_key,
                region=ecr.region_name,
                service="ecr",
            )
        except AuthFailure as failure:
            self._api_error(operation, failure.code, failure.message, failure.status)
            return
        delay = ecr.faults.latency(operation)
        if delay:
            time.sleep(delay)
        injected = ecr.faults.take_failure(operation)
        if injected is not None:
            self._inject(operation, injected)
            return
        try:
            reply = answer(ecr, read_request(operation, body))
        except ServiceError as exc:
            self._api_error(operation, exc.code, exc.message, exc.status)
            return
        except Exception:
            # A LocalECR bug: answer as the service does when it fails, and show why.
            logger.exception("LocalECR failed answering %s", operation)
            self._api_error(operation, "ServerException", "LocalECR failed; see its log", 500)
            return
        self._send_api(operation, 200, json.dumps(reply.body).encode(), fault=reply.fault)

    def do_PUT(self) -> None:
        if not self._registry():
            self._api_error("?", "UnknownOperationException", "Unknown operation", 400, close=True)

    do_PATCH = do_PUT
    do_DELETE = do_PUT

    def _registry(self) -> bool:
        """Answer a registry API (``/v2/``) request; return False if it is not one."""
        if not is_registry_path(urlsplit(self.path).path):
            return False
        Exchange(self).run()
        return True

    def handle_expect_100(self) -> bool:
        if is_registry_path(urlsplit(self.path).path):
            # The registry API reads (or drains) its own bodies, streamed and unlimited.
            return super().handle_expect_100()
        # A client that asks first is refused before it sends the body at all.
        problem = self._body_problem()
        if problem is not None:
            target = self.headers.get("X-Amz-Target", "")
            self._refuse(*problem, operation=target.removeprefix(_TARGET_PREFIX) or "?")
            return False
        return super().handle_expect_100()

    def _body_problem(self) -> tuple[int, str, str] | None:
        """Return (status, code, message) if the declared body may not be read."""
        if "Transfer-Encoding" in self.headers:
            return 411, "LengthRequiredException", "LocalECR needs a Content-Length header"
        lengths = set(self.headers.get_all("Content-Length") or ["0"])
        text = lengths.pop() if len(lengths) == 1 else ""
        # At most 20 digits: int() of thousands of digits raises (and would cost time).
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            return 400, "BadRequestException", "Content-Length is not one non-negative integer"
        if int(text) > MAX_API_BODY:
            return (
                413,
                "RequestEntityTooLargeException",
                f"The request body of {int(text)} bytes is over LocalECR's limit of "
                f"{MAX_API_BODY} bytes",
            )
        return None

    def _read_body(self, operation: str) -> bytes | None:
        """Return the request body, or None if it was refused or never arrived."""
        problem = self._body_problem()
        if problem is not None:
            self._refuse(*problem, operation=operation)
            return None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            # The client hung up mid-body: there is no one to answer.
            self.close_connection = True
            return None
        return body

    def _refuse(self, status: int, code: str, message: str, *, operation: str = "?") -> None:
        """Answer without reading the body, then close the connection."""
        self.close_connection = True
        self._api_error(operation, code, message, status, close=True)
        self.linger()

    def linger(self) -> None:
        """Having answered without reading the body: send our end, and read and drop a bounded
        part of what the client still sends, so that it reads the answer."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        dropped = 0
        # A reset or a timeout only ends the lingering early.
        with contextlib.suppress(OSError):
            while dropped < _LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                dropped += len(chunk)

    def _api_error(
        self,
        operation: str,
        code: str,
        message: str,
        status: int,
        *,
        fault: FaultName | None = None,
        close: bool = False,
    ) -> None:
        body = json.dumps({"__type": code, "message": message}).encode()
        self._send_api(operation, status, body, fault=fault, close=close)

    def _inject(self, operation: str, failure: Failure) -> None:
        if failure.drop_connection:
            self.server.ecr.stats.add(Record("api", operation, 0, fault="drop_connection"))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if failure.body is not None:
            self._send_api(
                operation, failure.status, failure.body, fault="raw_body", ctype="text/html"
            )
            return
        self._api_error(operation, failure.code, failure.message, failure.status, fault="fail_next")

    def _send_api(
        self,
        operation: str,
        status: int,
        body: bytes,
        *,
        fault: FaultName | None = None,
        ctype: str = _JSON_TYPE,
        close: bool = False,
    ) -> None:
        self.server.ecr.stats.add(Record("api", operation, status, fault=fault))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    # -- blobs --------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._registry():
            self._blob(send_body=True)

    def do_HEAD(self) -> None:
        if not self._registry():
            self._blob(send_body=False)

    def _blob(self, *, send_body: bool) -> None:  # noqa: PLR0912, PLR0915 (one request's story, in order)
        ecr = self.server.ecr
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        match = BLOB_PATH.fullmatch(path)
        digest = match["digest"] if match else path
        range_header = self.headers.get("Range")

        def record(status: int, fault: FaultName | None = None) -> None:
            ecr.stats.add(Record("blob", digest, status, range_header, fault))

        if match is None:
            record(404)
            self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        refused = ecr._check_url(path, dict(parse_qsl(parts.query)))
        if refused is not None:
            record(refused[0])
            self._s3_error(*refused)
            return
        delay = ecr.faults.latency("blob")
        if delay:
            time.sleep(delay)
        injected = ecr.faults.take_blob_status()
        if injected is not None:
            record(injected[0], "fail_blob")
            self._s3_error(*injected)
            return
        if not ecr.registry.blobs.has(digest):
            record(404)
            self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        size = ecr.registry.blobs.size(digest)
        start, end, code = 0, size, 200
        if range_header and not ecr.faults.ignore_range and RANGE.fullmatch(range_header.strip()):
            parsed = parse_range(range_header, size)
            if parsed is None:
                record(416)
                self._s3_error(
                    416, "InvalidRange", "The requested range is not satisfiable", size=size
                )
                return
            start, end, code = parsed[0], parsed[1], 206
        fault: FaultName | None = None
        cut = end
        if send_body and ecr.faults.take_blob_fault("truncate"):
            fault, cut = "truncate", start + ecr.faults.truncate_after(end - start)
        corrupt = send_body and ecr.faults.take_blob_fault("corrupt")
        if corrupt:
            fault = "corrupt"
        if ecr.faults.ignore_range and range_header:
            fault = fault or "ignore_range"
        record(code, fault)
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{digest.split(":")[-1][:32]}"')
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not send_body:
            return
        chunks = ecr.registry.blobs.read(digest, start, cut, _chunk_size(ecr.faults.bandwidth))
        self._stream(chunks, corrupt=corrupt, bandwidth=ecr.faults.bandwidth)
        if cut < end:
            # Promised Content-Length bytes, sent fewer: the client sees a short body.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stream(
        self, chunks: Iterator[bytes | memoryview], *, corrupt: bool, bandwidth: int | None
    ) -> None:
        started, sent = time.monotonic(), 0
        for piece in chunks:
            chunk: bytes | bytearray | memoryview = piece
            if corrupt:
                flipped = bytearray(piece)
                flipped[0] ^= 0xFF
                chunk, corrupt = flipped, False
            try:
                self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            sent += len(chunk)
            if bandwidth:
                ahead = sent / bandwidth - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

    def _s3_error(self, status: int, code: str, message: str, *, size: int | None = None) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        body = error_body(code, message, request_id)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", request_id)
        if size is not None:
            self.send_header("Content-Range", f"bytes */{size}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _chunk_size(bandwidth: int | None) -> int:
    # Small pieces under a bandwidth cap keep the pacing smooth.
    return _CHUNK if not bandwidth else max(4096, min(_CHUNK, bandwidth // 50))
