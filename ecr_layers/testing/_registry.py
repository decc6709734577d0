"""
LocalECR's registry API (``/v2/``, the OCI distribution spec) over the store its ECR API uses.

One `Exchange` per request: route, Basic auth with a ``GetAuthorizationToken``
password, injected faults, then the route's answer.  Bodies are streamed (blob
chunks to an upload session's file, manifests up to ECR's 4 MiB), every error is the
spec's JSON body, and every answer is counted in `Stats` under its operation name.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ._bodies import PIECE, Body, Gone
from ._errors import RegistryError, ServiceError
from ._faults import FaultName, Record
from ._images import DIGEST, find_image, is_tag, read_manifest
from ._layers import digest_of
from ._s3 import RANGE, parse_range
from ._store import moves_immutable_tag

if TYPE_CHECKING:
    from ._handler import Handler
    from ._server import LocalECR
    from ._store import _Repository

#: ECR's largest manifest (``PutImage``'s ``imageManifest`` is at most 4 MiB too).
MAX_MANIFEST = 4 * 1024 * 1024
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"

#: A repository name, as the distribution spec writes it.
NAME = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d{1,20})-(\d{1,20})(?:/(?:\d{1,20}|\*))?")

#: (path pattern, route); the first that matches wins, so uploads precede blobs.
_ROUTES = (
    (re.compile(r"/v2/?"), "ping"),
    (re.compile(r"/v2/(?P<name>.+)/tags/list"), "tags"),
    (re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)"), "manifest"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)"), "upload"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)"), "referrers"),
)

#: (route, method) -> the operation name `Stats` counts and `Faults` targets.
OPERATIONS = {
    ("ping", "GET"): "Ping",
    ("ping", "HEAD"): "Ping",
    ("tags", "GET"): "ListTags",
    ("manifest", "GET"): "GetManifest",
    ("manifest", "HEAD"): "HeadManifest",
    ("manifest", "PUT"): "PutManifest",
    ("manifest", "DELETE"): "DeleteManifest",
    ("upload", "POST"): "StartUpload",
    ("upload", "GET"): "GetUpload",
    ("upload", "PATCH"): "PatchUpload",
    ("upload", "PUT"): "FinishUpload",
    ("upload", "DELETE"): "CancelUpload",
    ("blob", "GET"): "GetBlob",
    ("blob", "HEAD"): "HeadBlob",
    ("blob", "DELETE"): "DeleteBlob",
    ("referrers", "GET"): "GetReferrers",
}
# The operations that may create their repository (LocalECR.create_repositories_on_push).
_PUSHES = {"StartUpload", "PutManifest"}


def is_registry_path(path: str) -> bool:
    """Return whether a request for *path* is the registry API's."""
    return path == "/v2" or path.startswith("/v2/")


class Exchange:
    """One registry API request and its answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.ecr: LocalECR = handler.server.ecr
        parts = urlsplit(handler.path)
        self.path = unquote(parts.path)
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.method = handler.command
        self.operation = "?"
        self.range_header: str | None = None
        self.body = Body(handler)

    # -- the request's story ----------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Gone:
            self.handler.close_connection = True
        except RegistryError as exc:
            self.error(exc)
        except Exception as exc:  # a LocalECR bug: answer as a registry does, and show why
            from ._handler import logger

            logger.exception("LocalECR failed answering %s", self.operation)
            self.error(RegistryError("UNKNOWN", f"LocalECR failed: {type(exc).__name__}", 500))

    def _run(self) -> None:
        route, match = _route(self.path)
        self.operation = OPERATIONS.get((route, self.method), "?") if route else "?"
        if route is None:
            raise RegistryError("NOT_FOUND", "no registry API route has this path", 404)
        self._authorize()
        if self.operation == "?":
            raise RegistryError("UNSUPPORTED", f"{self.method} is not supported here", 405)
        faults = self.ecr.faults
        delay = faults.latency(self.operation)
        if delay:
            time.sleep(delay)
        injected = faults.take_failure(self.operation)
        if injected is not None:
            if injected.drop_connection:
                self._record(0, "drop_connection")
                self.handler.close_connection = True
                self.handler.connection.shutdown(socket.SHUT_RDWR)
                return
            raise _Injected(injected.code, injected.message, injected.status)
        if route == "ping":
            self.send(200, b"{}", ctype="application/json")
            return
        name = match["name"]
        if NAME.fullmatch(name) is None or len(name) > 256:
            raise RegistryError("NAME_INVALID", "invalid repository name", 400, {"name": name})
        if self.operation in _PUSHES and self.ecr.create_repositories_on_push:
            self.ecr.registry.create_repository(name)
        with self.ecr.registry.lock():
            if self.ecr.registry.repository(name) is None:
                raise RegistryError(
                    "NAME_UNKNOWN", "repository name not known to registry", 404, {"name": name}
                )
        _ANSWERS[route](self, name, match)

    def _authorize(self) -> None:
        scheme, _, credentials = self.handler.headers.get("Authorization", "").partition(" ")
        password = None
        if scheme.lower() == "basic":
            try:
                user, _, password = (
                    base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                password = None
            else:
                password = password if user == "AWS" else None
        if password is None or not self.ecr.tokens.check(password):
            raise RegistryError(
                "UNAUTHORIZED", "authentication required: a GetAuthorizationToken password", 401
            )

    # -- routes ---------------------------------------------------------------------

    def _tags(self, name: str, match: re.Match[str]) -> None:
        n_text, last = self.query.get("n"), self.query.get("last", "")
        if n_text is not None and not (n_text.isdigit() and len(n_text) < 10):
            raise RegistryError("PAGINATION_NUMBER_INVALID", "invalid number of results", 400)
        with self.ecr.registry.lock():
            tags = sorted(self._repo(name).tags)
        tags = [tag for tag in tags if tag > last] if last else tags
        headers = {}
        if n_text is not None and len(tags) > int(n_text):
            tags = tags[: int(n_text)]
            if tags:
                link = f"/v2/{name}/tags/list?n={n_text}&last={quote(tags[-1])}"
                headers["Link"] = f'<{link}>; rel="next"'
        body = json.dumps({"name": name, "tags": tags}).encode()
        self.send(200, body, ctype="application/json", headers=headers)

    def _manifest(self, name: str, match: re.Match[str]) -> None:
        reference = match["ref"]
        if self.method == "PUT":
            self._put_manifest(name, reference)
            return
        registry = self.ecr.registry
        with registry.lock():
            repo = self._repo(name)
            key = {"imageDigest": reference} if ":" in reference else {"imageTag": reference}
            digest = find_image(key, repo.tags, repo.manifests)
            manifest = repo.manifests.get(digest) if isinstance(digest, str) else None
            if manifest is None or not isinstance(digest, str):
                raise RegistryError(
                    "MANIFEST_UNKNOWN", "manifest unknown", 404, {"reference": reference}
                )
            if self.method == "DELETE":
                _delete_manifest(repo, reference, digest)
        if self.method == "DELETE":
            self.send(202)  # outside the lock: a slow reader must not hold the store
            return
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
        self.send(200, manifest.data, ctype=manifest.media_type, headers=headers)

    def _put_manifest(self, name: str, reference: str) -> None:
        data = self.body.read_at_most(MAX_MANIFEST)
        declared = self.handler.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            manifest = read_manifest(data.decode(), declared or None)
        except (UnicodeDecodeError, ServiceError) as exc:
            message = exc.message if isinstance(exc, ServiceError) else "manifest is not UTF-8"
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", 400, message) from None
        digest = digest_of(manifest.data)
        by_digest = ":" in reference
        if by_digest and reference != digest:
            raise RegistryError(
                "DIGEST_INVALID", "provided digest did not match uploaded content", 400
            )
        if not by_digest and not is_tag(reference):
            raise RegistryError("TAG_INVALID", "manifest tag did not match URI", 400)
        registry = self.ecr.registry
        with registry.lock():
            repo = self._repo(name)
            missing = [d for d in manifest.blobs if d not in repo.layers]
            missing += [d for d in manifest.manifests if d not in repo.manifests]
            if missing:
                raise RegistryError(
                    "MANIFEST_BLOB_UNKNOWN",
                    "blob unknown to registry",
                    400,
                    {"digest": missing[0]},
                )
            tag = None if by_digest else reference
            if tag is not None and moves_immutable_tag(repo, tag, digest):
                raise RegistryError(
                    "TAG_INVALID",
                    f"The image tag '{tag}' already exists in the '{name}' repository and "
                    "cannot be overwritten because the repository is immutable.",
                    400,
                )
            registry.store_manifest(repo, digest, manifest, tag)
        headers = {"Location": self._url(f"/v2/{name}/manifests/{digest}")}
        headers["Docker-Content-Digest"] = digest
        subject = _subject(manifest.data)
        if subject is not None:
            headers["OCI-Subject"] = subject
        self.send(201, headers=headers)

    def _blob(self, name: str, match: re.Match[str]) -> None:
        digest = match["digest"]
        if self.method == "DELETE":
            raise RegistryError("UNSUPPORTED", "blobs are deleted with their images in ECR", 405)
        blobs = self.ecr.registry.blobs
        with self.ecr.registry.lock():
            known = digest in self._repo(name).layers and blobs.has(digest)
        if not known:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", 404, {"digest": digest})
        size = blobs.size(digest)
        headers = {"Docker-Content-Digest": digest, "Accept-Ranges": "bytes"}
        if self.method == "GET" and self.ecr.redirect_blobs:
            # As ECR sends its clients to S3: the signed URL LocalECR's download host serves.
            headers["Location"] = self.ecr.download_url(name, digest)
            self.send(307, headers=headers)
            return
        self.range_header = self.handler.headers.get("Range")
        start, end, status = 0, size, 200
        if self.method == "GET" and self.range_header and RANGE.fullmatch(self.range_header):
            parsed = parse_range(self.range_header, size)
            if parsed is None:
                raise RegistryError("BLOB_UNKNOWN", "range not satisfiable", 416)
            start, end, status = parsed[0], parsed[1], 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send(
            status,
            ctype="application/octet-stream",
            headers=headers,
            length=end - start,
            stream=blobs.read(digest, start, end, PIECE) if self.method == "GET" else None,
        )

    def _upload(self, name: str, match: re.Match[str]) -> None:
        uploads = self.ecr.registry.uploads
        if self.method == "POST":
            self._start_upload(name)
            return
        session = uploads.get(name, match["session"])
        if self.method == "DELETE":
            uploads.cancel(session)
            self.send(204)
            return
        if self.method == "PATCH":
            uploads.append(session, self._content_range_start(), self.body.pieces())
            self.send(202, headers=self._session_headers(name, session.id, session.size))
            return
        if self.method == "PUT":
            digest = self._digest_param()
            uploads.append(session, None, self.body.pieces())
            self._finish(name, session, digest)
            return
        self.send(204, headers=self._session_headers(name, session.id, session.size))

    def _start_upload(self, name: str) -> None:
        registry, uploads = self.ecr.registry, self.ecr.registry.uploads
        mount, source = self.query.get("mount"), self.query.get("from")
        if mount is not None and source is not None:
            with registry.lock():
                origin = registry.repository(source)
                if origin is not None and mount in origin.layers and registry.blobs.has(mount):
                    self._repo(name).layers.add(mount)
                    self.body.drain()
                    self.send(201, headers=self._blob_headers(name, mount))
                    return
        if "digest" in self.query:
            digest = self._digest_param()
            session = uploads.start(name)
            try:
                uploads.append(session, None, self.body.pieces())
            except BaseException:
                uploads.cancel(session)
                raise
            self._finish(name, session, digest)
            return
        self.body.drain()
        session = uploads.start(name)
        self.send(202, headers=self._session_headers(name, session.id, 0))

    def _finish(self, name: str, session: Any, digest: str) -> None:
        registry = self.ecr.registry
        path = registry.uploads.finish(session, digest)
        with registry.lock():
            registry.blobs.adopt(digest, path)
            self._repo(name).layers.add(digest)
        self.send(201, headers=self._blob_headers(name, digest))

    def _referrers(self, name: str, match: re.Match[str]) -> None:
        subject = match["digest"]
        if DIGEST.fullmatch(subject) is None:
            raise RegistryError("DIGEST_INVALID", "invalid digest", 400)
        wanted = self.query.get("artifactType")
        with self.ecr.registry.lock():
            manifests = list(self._repo(name).manifests.items())
        descriptors = []
        for digest, manifest in manifests:
            descriptor = _referrer(digest, manifest.media_type, manifest.data, subject)
            if descriptor is not None and wanted in (None, descriptor.get("artifactType")):
                descriptors.append(descriptor)
        body = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": descriptors}
        headers = {"OCI-Filters-Applied": "artifactType"} if wanted is not None else {}
        self.send(200, json.dumps(body).encode(), ctype=_OCI_INDEX, headers=headers)

    # -- helpers --------------------------------------------------------------------

    def _repo(self, name: str) -> _Repository:
        # Called under the registry's lock; the repository was seen to exist at routing.
        repo = self.ecr.registry.repository(name)
        if repo is None:
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry", 404)
        return repo

    def _digest_param(self) -> str:
        digest = self.query.get("digest", "")
        if DIGEST.fullmatch(digest) is None:
            raise RegistryError("DIGEST_INVALID", "digest missing or malformed", 400)
        return digest

    def _content_range_start(self) -> int | None:
        header = self.handler.headers.get("Content-Range")
        if header is None:
            return None
        match = _CONTENT_RANGE.fullmatch(header.strip())
        if match is None or int(match[2]) < int(match[1]):
            raise RegistryError("BLOB_UPLOAD_INVALID", "malformed Content-Range", 416)
        return int(match[1])

    def _session_headers(self, name: str, session_id: str, size: int) -> dict[str, str]:
        return {
            "Location": self._url(f"/v2/{name}/blobs/uploads/{session_id}"),
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": session_id,
        }

    def _blob_headers(self, name: str, digest: str) -> dict[str, str]:
        return {
            "Location": self._url(f"/v2/{name}/blobs/{digest}"),
            "Docker-Content-Digest": digest,
        }

    def _url(self, path: str) -> str:
        host = self.handler.headers.get("Host") or self.ecr.endpoint_url.split("://", 1)[1]
        return f"http://{host}{path}"

    def _record(self, status: int, fault: FaultName | None = None) -> None:
        self.ecr.stats.add(Record("registry", self.operation, status, self.range_header, fault))

    # -- answers --------------------------------------------------------------------

    def error(self, exc: RegistryError) -> None:
        """Answer *exc* as the spec's JSON error body."""
        self.body.drain()
        headers = {}
        if exc.status == 401:
            host = self.ecr.endpoint_url
            headers["WWW-Authenticate"] = f'Basic realm="{host}/",service="ecr.amazonaws.com"'
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.detail is not None:
            error["detail"] = exc.detail
        body = json.dumps({"errors": [error]}).encode()
        fault: FaultName | None = "fail_next" if isinstance(exc, _Injected) else None
        self.send(exc.status, body, ctype="application/json", headers=headers, fault=fault)

    def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        ctype: str | None = None,
        headers: dict[str, str] | None = None,
        length: int | None = None,
        stream: Iterator[bytes | memoryview] | None = None,
        fault: FaultName | None = None,
    ) -> None:
        self.body.drain()
        self._record(status, fault)
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if ctype is not None:
            handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if self.method == "HEAD":
            body, stream = b"", None
        if stream is not None:
            handler._stream(stream, corrupt=False, bandwidth=None)
        elif body:
            handler.wfile.write(body)
        if self.body.unread:
            handler.linger()


class _Injected(RegistryError):
    """An error `Faults.fail_next` asked for."""


def _delete_manifest(repo: _Repository, reference: str, digest: str) -> None:
    # By tag, the tag goes; by digest, the manifest and every tag naming it.
    if ":" not in reference:
        del repo.tags[reference]
    else:
        del repo.manifests[digest]
        for tag in [t for t, d in repo.tags.items() if d == digest]:
            del repo.tags[tag]


#: route -> the method that answers it (once auth, faults and the repository are checked).
_ANSWERS: dict[str, Callable[[Exchange, str, re.Match[str]], None]] = {
    "tags": Exchange._tags,
    "manifest": Exchange._manifest,
    "upload": Exchange._upload,
    "blob": Exchange._blob,
    "referrers": Exchange._referrers,
}


def _route(path: str) -> tuple[str | None, re.Match[str]]:
    for pattern, route in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return route, match
    return None, re.match("", "")  # type: ignore[return-value]


def _subject(data: bytes) -> str | None:
    try:
        subject = json.loads(data).get("subject")
    except (ValueError, AttributeError):
        return None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def _referrer(digest: str, media_type: str, data: bytes, subject: str) -> dict[str, Any] | None:
    """Return the referrers API's descriptor of a manifest if it names *subject*, else None."""
    if _subject(data) != subject:
        return None
    document = json.loads(data)
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
    config = document.get("config")
    artifact_type = document.get("artifactType") or (
        config.get("mediaType") if isinstance(config, dict) else None
    )
    if isinstance(artifact_type, str):
        descriptor["artifactType"] = artifact_type
    if isinstance(document.get("annotations"), dict):
        descriptor["annotations"] = document["annotations"]
    return descriptor
