"""
LocalECR: a real HTTP ECR endpoint on loopback, with fault injection and request counts.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import attrs

from ._auth import AuthFailure, url_signature, verify_sigv4
from ._store import PullThroughRule, Registry, ServiceError

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

    from ecr_layers import LayerClient, RetryPolicy

DEFAULT_ACCESS_KEY_ID = "AKIALOCALECR00000000"
DEFAULT_SECRET_ACCESS_KEY = "localecr/secret/access/key/0000000000000"  # noqa: S105 (a documented test default)
DEFAULT_REGION = "us-east-1"
DEFAULT_REGISTRY_ID = "123456789012"

_TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
_JSON_TYPE = "application/x-amz-json-1.1"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
OPERATIONS = (
    "BatchCheckLayerAvailability",
    "BatchGetImage",
    "CompleteLayerUpload",
    "CreateRepository",
    "DescribeRepositories",
    "GetDownloadUrlForLayer",
    "InitiateLayerUpload",
    "PutImage",
    "UploadLayerPart",
)


@attrs.frozen
class Failure:
    """An injected API failure: an error response, a raw body, or a dropped connection."""

    code: str = "ServerException"
    status: int = 500
    message: str = "Injected failure"
    #: Sent as the whole body instead of the JSON error (a proxy's HTML page, b"").
    body: bytes | None = None
    #: Close the connection without answering.
    drop_connection: bool = False


@attrs.frozen
class Record:
    """One request as the server saw it."""

    #: ``"api"`` or ``"blob"``.
    kind: str
    #: The API operation, or the blob's digest.
    target: str
    status: int
    #: The request's Range header, for blobs.
    range: str | None = None
    #: The injected fault that shaped the answer, if any.
    fault: str | None = None


class Stats:
    """Every request the endpoint served, for tests to count from the server side.

    Counts are kept for the endpoint's whole life; the individual `records` only
    for the most recent `RECORDS_KEPT` requests, so a long-running ``serve`` does not
    grow without bound.
    """

    RECORDS_KEPT = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: deque[Record] = deque(maxlen=self.RECORDS_KEPT)
        self._counts: Counter[tuple[str, str, int, str | None]] = Counter()

    def add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)
            self._counts[record.kind, record.target, record.status, record.fault] += 1

    @property
    def records(self) -> list[Record]:
        """A copy of the recent records, oldest first."""
        with self._lock:
            return list(self._records)

    def count(self, operation: str | None = None, *, status: int | None = None) -> int:
        """Return how many API requests (of *operation*, with *status*) were served."""
        return self._count("api", operation, status)

    def blob_count(self, digest: str | None = None, *, status: int | None = None) -> int:
        """Return how many blob downloads (of *digest*, with *status*) were served."""
        return self._count("blob", digest, status)

    def faults(self, fault: str | None = None) -> int:
        """Return how many requests an injected fault (of kind *fault*) shaped."""
        with self._lock:
            return sum(
                n
                for (_, _, _, f), n in self._counts.items()
                if f is not None and fault in (None, f)
            )

    def reset(self) -> None:
        """Forget every record and count."""
        with self._lock:
            self._records.clear()
            self._counts.clear()

    def _count(self, kind: str, target: str | None, status: int | None) -> int:
        with self._lock:
            return sum(
                n
                for (k, t, st, _), n in self._counts.items()
                if k == kind and target in (None, t) and status in (None, st)
            )


class Faults:
    """What LocalECR should get wrong, and how often; safe to change while it serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[Failure]] = {}
        self._latency: dict[str | None, float] = {}
        self._blob_faults: dict[str, int] = {}
        self._blob_status: list[tuple[int, str, str]] = []
        self._truncate_after: int | None = None
        #: Bytes per second per blob connection; None for no cap.
        self.bandwidth: int | None = None
        #: Answer ranged blob requests with the whole blob (200), as some servers do.
        self.ignore_range: bool = False

    def fail_next(
        self,
        operation: str,
        times: int = 1,
        *,
        code: str = "ServerException",
        status: int = 500,
        message: str = "Injected failure",
        body: bytes | None = None,
        drop_connection: bool = False,
    ) -> None:
        """Fail the next *times* calls of *operation* with this error."""
        failure = Failure(code, status, message, body, drop_connection)
        with self._lock:
            self._failures.setdefault(operation, []).extend([failure] * times)

    def add_latency(self, seconds: float, operation: str | None = None) -> None:
        """Delay every API call (or only *operation*, or ``"blob"`` downloads) by *seconds*."""
        with self._lock:
            self._latency[operation] = seconds

    def truncate_next_blobs(self, times: int = 1, *, after: int | None = None) -> None:
        """Cut the next *times* blob bodies short, after *after* bytes (default: half)."""
        self._add_blob_fault("truncate", times)
        with self._lock:
            self._truncate_after = after

    def corrupt_next_blobs(self, times: int = 1) -> None:
        """Flip a byte in the next *times* blob bodies (same length, wrong digest)."""
        self._add_blob_fault("corrupt", times)

    def expire_next_urls(self, times: int = 1) -> None:
        """Hand out already-expired download URLs for the next *times* calls."""
        self._add_blob_fault("expired_url", times)

    def fail_next_blobs(
        self,
        times: int = 1,
        *,
        status: int = 503,
        code: str = "SlowDown",
        message: str = "Injected failure",
    ) -> None:
        """Answer the next *times* blob downloads with an S3-style XML error."""
        with self._lock:
            self._blob_status.extend([(status, code, message)] * times)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._failures.clear()
            self._latency.clear()
            self._blob_faults.clear()
            self._blob_status.clear()
            self.bandwidth = None
            self.ignore_range = False

    # -- used by the server ---------------------------------------------------------

    def _add_blob_fault(self, kind: str, times: int) -> None:
        with self._lock:
            self._blob_faults[kind] = self._blob_faults.get(kind, 0) + times

    def take_failure(self, operation: str) -> Failure | None:
        with self._lock:
            queue = self._failures.get(operation)
            return queue.pop(0) if queue else None

    def take_blob_fault(self, kind: str) -> bool:
        with self._lock:
            left = self._blob_faults.get(kind, 0)
            if left:
                self._blob_faults[kind] = left - 1
            return bool(left)

    def take_blob_status(self) -> tuple[int, str, str] | None:
        with self._lock:
            return self._blob_status.pop(0) if self._blob_status else None

    def latency(self, operation: str) -> float:
        with self._lock:
            if operation in self._latency:
                return self._latency[operation]
            # The catch-all delay is for API calls; blobs are delayed only by name.
            return 0.0 if operation == "blob" else self._latency.get(None, 0.0)

    def truncate_after(self, length: int) -> int:
        with self._lock:
            after = self._truncate_after
        return length // 2 if after is None else min(after, length - 1)


class LocalECR:
    """An ECR endpoint on loopback that botocore, boto3 and the AWS CLI can talk to.

    Use it as a context manager::

        with LocalECR() as ecr:
            [digest] = ecr.push_image("team/app", [b"layer bytes"])
            url = ecr.client().get_layer_url("team/app", digest)

    Requests must be SigV4-signed with `access_key_id` / `secret_access_key`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region_name: str = DEFAULT_REGION,
        registry_id: str = DEFAULT_REGISTRY_ID,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY,
        url_expires: int = 3600,
        storage_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.region_name = region_name
        self.registry_id = registry_id
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        #: Lifetime of the download URLs handed out, in seconds.
        self.url_expires = url_expires
        self.faults = Faults()
        self.stats = Stats()
        self._url_key = os.urandom(32)
        self._server = _Server((host, port), _Handler)
        self._server.ecr = self
        self._thread: threading.Thread | None = None
        self.registry = Registry(
            registry_id=registry_id,
            region_name=region_name,
            host=lambda: self.endpoint_url.split("://", 1)[1],
            storage_dir=storage_dir,
        )

    @property
    def endpoint_url(self) -> str:
        """The URL to give botocore as ``endpoint_url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalECR:
        """Start serving in a background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                # A short poll keeps stop() (and each test's teardown) quick.
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="LocalECR",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the ``ecr-layers serve`` command)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> LocalECR:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- seeding ----------------------------------------------------------------------

    def create_repository(self, repository_name: str) -> None:
        """Create a repository (no error if it exists)."""
        self.registry.create_repository(repository_name)

    def push_image(
        self, repository_name: str, layers: list[bytes], tag: str | None = "latest"
    ) -> list[str]:
        """Store *layers* and an image that references them; return the layers' digests."""
        return self.registry.push_image(repository_name, layers, tag)

    def add_layer(self, repository_name: str, data: bytes) -> str:
        """Upload a layer that no image references (so it is inaccessible); return its digest."""
        return self.registry.add_layer(repository_name, data)

    def add_pull_through_cache_rule(self, prefix: str, *, upstream_reachable: bool = False) -> None:
        """Serve repositories under *prefix* as a pull-through cache."""
        self.registry.pull_through.append(PullThroughRule(prefix, upstream_reachable))

    # -- clients ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS tools at this endpoint."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region_name,
            "AWS_REGION": self.region_name,
        }

    def botocore_client(self, **config: Any) -> ECRClient:
        """Return a plain botocore ECR client for this endpoint (botocore's retries off)."""
        import botocore.session
        from botocore.config import Config

        from ecr_layers import BOTOCORE_CONFIG

        session = botocore.session.Session()
        client = session.create_client(
            "ecr",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=BOTOCORE_CONFIG.merge(Config(**config)),
        )
        return client  # type: ignore[return-value]

    def client(self, *, retry_policy: RetryPolicy | None = None, **config: Any) -> LayerClient:
        """Return a `LayerClient` for this endpoint."""
        from ecr_layers import LayerClient

        return LayerClient(self.botocore_client(**config), retry_policy=retry_policy)

    # -- used by the handler --------------------------------------------------------

    def download_url(self, repository_name: str, digest: str) -> str:
        now = dt.datetime.now(dt.UTC)
        if self.faults.take_blob_fault("expired_url"):
            now -= dt.timedelta(seconds=self.url_expires + 60)
        amz_date = now.strftime(_AMZ_DATE)
        expires = str(self.url_expires)
        credential = f"{self.access_key_id}/{amz_date[:8]}/{self.region_name}/s3/aws4_request"
        path = f"/blobs/{digest}/{repository_name}"
        signature = url_signature(self._url_key, path, amz_date, expires, credential)
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={quote(credential, safe='')}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires}"
            f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
        )
        return f"{self.endpoint_url}{quote(path)}?{query}"

    def check_url(self, path: str, query: dict[str, str]) -> tuple[int, str, str] | None:
        """Return (status, S3 code, message) if the blob URL may not be used."""
        try:
            amz_date, expires = query["X-Amz-Date"], query["X-Amz-Expires"]
            credential, signature = query["X-Amz-Credential"], query["X-Amz-Signature"]
        except KeyError:
            return (
                403,
                "AccessDenied",
                "Query-string authentication requires the signature parameters",
            )
        expected = url_signature(self._url_key, path, amz_date, expires, credential)
        if not _constant_time_equal(expected, signature):
            return (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        signed = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
        if dt.datetime.now(dt.UTC) > signed + dt.timedelta(seconds=int(expires)):
            return 403, "AccessDenied", "Request has expired"
        return None


def _constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    ecr: LocalECR


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm
    # and the client's delayed ACK add 40 ms to every response.
    disable_nagle_algorithm = True
    # An idle keep-alive connection is dropped after this long.
    timeout = 60
    server: _Server
    server_version = "LocalECR"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Tests and the demo read stats, not an access log.

    # -- API --------------------------------------------------------------------------

    def do_POST(self) -> None:
        ecr = self.server.ecr
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(_TARGET_PREFIX)
        if not target.startswith(_TARGET_PREFIX) or operation not in OPERATIONS:
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
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._api_error(operation, "SerializationException", "Malformed JSON body", 400)
            return
        try:
            response = getattr(ecr.registry, operation)(request)
        except ServiceError as exc:
            self._api_error(operation, exc.code, exc.message, exc.status)
            return
        if operation == "GetDownloadUrlForLayer":
            response["downloadUrl"] = ecr.download_url(
                request["repositoryName"], request["layerDigest"]
            )
        self._send_api(operation, 200, json.dumps(response).encode())

    def _api_error(
        self, operation: str, code: str, message: str, status: int, *, fault: str | None = None
    ) -> None:
        body = json.dumps({"__type": code, "message": message}).encode()
        self._send_api(operation, status, body, fault=fault)

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
        fault: str | None = None,
        ctype: str = _JSON_TYPE,
    ) -> None:
        self.server.ecr.stats.add(Record("api", operation, status, fault=fault))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    # -- blobs --------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._blob(send_body=True)

    def do_HEAD(self) -> None:
        self._blob(send_body=False)

    def _blob(self, *, send_body: bool) -> None:  # noqa: PLR0912, PLR0915 (one request's story, in order)
        ecr = self.server.ecr
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        match = re.fullmatch(r"/blobs/([^/]+)/(.+)", path)
        digest = match[1] if match else path
        range_header = self.headers.get("Range")

        def record(status: int, fault: str | None = None) -> None:
            ecr.stats.add(Record("blob", digest, status, range_header, fault))

        if match is None:
            record(404)
            self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return
        refused = ecr.check_url(path, dict(parse_qsl(parts.query)))
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
        if range_header and not ecr.faults.ignore_range and _RANGE.fullmatch(range_header.strip()):
            parsed = _parse_range(range_header, size)
            if parsed is None:
                record(416)
                self._s3_error(
                    416, "InvalidRange", "The requested range is not satisfiable", size=size
                )
                return
            start, end, code = parsed[0], parsed[1], 206
        fault = None
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
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
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


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return [start, end) for a single ``bytes=`` range, or None if unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:
        suffix = int(match[2])
        return (max(0, size - suffix), size) if suffix else None
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return None
    return (start, end)
