"""
LocalECR's pre-signed blob URLs: their layout, the ``X-Amz-Date`` format and the
HMAC that signs and checks them.

The one home of these: SigV4 request checking (`._auth`) parses dates with
`parse_amz_date` too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote

AMZ_DATE = "%Y%m%dT%H%M%SZ"

#: The path a download URL names: ``/blobs/<digest>/<repository>``.
BLOB_PATH = re.compile(r"/blobs/(?P<digest>[^/]+)/(?P<repository>.+)")

#: ``(HTTP status, S3 error code, message)``: why a blob URL may not be used.
Refusal = tuple[int, str, str]


def format_amz_date(when: dt.datetime) -> str:
    """Return *when* (UTC) as an ``X-Amz-Date`` value."""
    return when.astimezone(dt.UTC).strftime(AMZ_DATE)


def parse_amz_date(text: str) -> dt.datetime:
    """Return the UTC time an ``X-Amz-Date`` value names; `ValueError` if malformed."""
    return dt.datetime.strptime(text, AMZ_DATE).replace(tzinfo=dt.UTC)


def url_signature(key: bytes, path: str, amz_date: str, expires: str, credential: str) -> str:
    """Return the HMAC-SHA256 that signs a blob URL's path and validity."""
    message = "\n".join(("GET", path, amz_date, expires, credential)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def presign(
    key: bytes,
    *,
    endpoint_url: str,
    repository_name: str,
    digest: str,
    access_key_id: str,
    region_name: str,
    expires: int,
    signed_at: dt.datetime,
) -> str:
    """Return an S3-style pre-signed URL for a blob, valid *expires* seconds from *signed_at*."""
    amz_date = format_amz_date(signed_at)
    credential = f"{access_key_id}/{amz_date[:8]}/{region_name}/s3/aws4_request"
    path = f"/blobs/{digest}/{repository_name}"
    signature = url_signature(key, path, amz_date, str(expires), credential)
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={quote(credential, safe='')}"
        f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires}"
        f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
    )
    return f"{endpoint_url}{quote(path)}?{query}"


def check(key: bytes, path: str, query: Mapping[str, str]) -> Refusal | None:
    """Return why the blob URL (unquoted *path*, parsed *query*) may not be used, or None."""
    try:
        amz_date, expires = query["X-Amz-Date"], query["X-Amz-Expires"]
        credential, signature = query["X-Amz-Credential"], query["X-Amz-Signature"]
    except KeyError:
        return (
            403,
            "AccessDenied",
            "Query-string authentication requires the signature parameters",
        )
    expected = url_signature(key, path, amz_date, expires, credential)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    # Past the signature, the date and lifetime are the ones presign() wrote.
    if dt.datetime.now(dt.UTC) > parse_amz_date(amz_date) + dt.timedelta(seconds=int(expires)):
        return (403, "AccessDenied", "Request has expired")
    return None
