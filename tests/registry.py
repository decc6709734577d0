"""A bare registry API client for the tests: urllib3 requests, Basic auth, nothing hidden.

Shared by the registry tests and the differential test, which runs one script
against LocalECR and against distribution's reference registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import urllib3

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_codes(response: urllib3.BaseHTTPResponse) -> list[str]:
    """The spec error body's codes, or [] if the body is not one."""
    try:
        return [error["code"] for error in json.loads(response.data)["errors"]]
    except (ValueError, KeyError, TypeError):
        return []


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                 "size": len(layer)}
                for layer in layers
            ],
            **extra,
        }
    ).encode()  # fmt: skip


class V2:
    """Requests to one registry's ``/v2/`` with Basic credentials (or none)."""

    def __init__(self, base_url: str, password: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.headers = {}
        if password is not None:
            token = base64.b64encode(f"AWS:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.http = urllib3.PoolManager(retries=False, timeout=30)

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        redirect: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        url = path if path.startswith("http") else self.base + path
        # No retries ever; redirects followed only when asked (a blob GET to its URL).
        retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0,
                                redirect=3 if redirect else 0, raise_on_redirect=False)  # fmt: skip
        return self.http.request(
            method, url, body=body, headers={**self.headers, **(headers or {})}, retries=retries
        )

    def push_blob(self, name: str, data: bytes) -> str:
        """Push *data* whole (POST then PUT ?digest=); return its digest."""
        started = self("POST", f"/v2/{name}/blobs/uploads/")
        assert started.status == 202, started.data
        done = self("PUT", _with_digest(started.headers["Location"], sha256(data)), data,
                    {"Content-Type": "application/octet-stream"})  # fmt: skip
        assert done.status == 201, done.data
        return sha256(data)

    def put_manifest(
        self, name: str, reference: str, data: bytes, media_type: str = OCI_MANIFEST
    ) -> urllib3.BaseHTTPResponse:
        return self("PUT", f"/v2/{name}/manifests/{reference}", data, {"Content-Type": media_type})


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def with_digest(location: str, digest: str) -> str:
    """Add ``digest=`` to an upload session's Location (which may carry a query already)."""
    return _with_digest(location, digest)
