"""
The `LayerUrl` value object, and keeping pre-signed URLs' secrets out of sight.

A pre-signed URL is a bearer credential: whoever holds it can download the layer,
and its ``X-Amz-Credential`` names the access key.  Anything that renders a URL for
people (reprs, logs, error messages, the command line) goes through `redact_url`.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import attrs

# Query parameters whose values are secrets: SigV4's, CloudFront's signed URLs' and
# anything else that calls itself a signature, credential or token.
_SECRET_PARAM = re.compile(r"(?i)(signature|credential|token|^policy$|^key-pair-id$|^sig$)")
_REDACTED = "REDACTED"
_DATE = re.compile(r"(?:^|&)X-Amz-Date=(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z(?:&|$)")
_EXPIRES = re.compile(r"(?:^|&)X-Amz-Expires=(\d{1,10})(?:&|$)")


def redact_url(url: str) -> str:
    """Return *url* with every secret query value and any password replaced by ``REDACTED``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{_REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&") if pair)
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    return f"{rebuilt}?{query}" if query else rebuilt


def _redact_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{name}={_REDACTED}" if sep and _SECRET_PARAM.search(name) else pair


def expiry_from_url(url: str) -> dt.datetime | None:
    """Return when a SigV4 pre-signed URL expires, or None if it does not say."""
    # A regex and a hand-built datetime, not parse_qsl and strptime: this runs on
    # every call, and strptime alone costs more than the rest of the facade.
    query = url.partition("?")[2]
    date = _DATE.search(query)
    expires = _EXPIRES.search(query)
    if date is None or expires is None:
        return None  # a CDN URL (pull-through cache) may carry neither
    try:
        year, month, day, hour, minute, second = map(int, date.groups())
        signed = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        return signed + dt.timedelta(seconds=int(expires[1]))
    except (ValueError, OverflowError):
        return None


@attrs.frozen(repr=False)
class LayerUrl:
    """A layer's pre-signed download URL, as `get_layer_url` returns it."""

    #: The pre-signed URL.  A bearer credential: do not log it.
    download_url: str
    #: The layer's digest, as the service confirmed it.
    layer_digest: str
    #: When the URL stops working (UTC), or None when the URL does not say.
    expires_at: dt.datetime | None = None

    def __repr__(self) -> str:
        return (
            f"LayerUrl(download_url={redact_url(self.download_url)!r}, "
            f"layer_digest={self.layer_digest!r}, expires_at={self.expires_at!r})"
        )

    def expired(self, *, margin: float = 0.0) -> bool:
        """Return True if the URL has expired, or will within *margin* seconds."""
        if self.expires_at is None:
            return False
        now = dt.datetime.now(dt.UTC)
        return now + dt.timedelta(seconds=margin) >= self.expires_at
