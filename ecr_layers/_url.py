"""
The `LayerUrl` value object, and keeping pre-signed URLs' secrets out of sight.

A pre-signed URL is a bearer credential: whoever holds it can download the layer,
and its ``X-Amz-Credential`` names the access key.  Anything that renders a URL for
people (reprs, logs, error messages, the command line) goes through `redact_url`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import attrs

if TYPE_CHECKING:
    from ._exceptions import LayerRef

# Query parameters whose values are secrets: SigV4's, CloudFront's signed URLs' and
# anything else that calls itself a signature, credential or token.
_SECRET_PARAM = re.compile(r"(?i)(signature|credential|token|^policy$|^key-pair-id$|^sig$)")
_REDACTED = "REDACTED"


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


URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """Return *text* with every URL in it redacted (see `redact_url`)."""
    return URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


# A secret as it appears outside a whole URL: a bare query ("GET /k?X-Amz-Signature=…"
# in urllib3's debug log), a SigV4 Authorization header ("Credential=…, Signature=…")
# or a header dict ("'X-Amz-Security-Token': b'…'") in botocore's.
_SECRET_IN_TEXT = re.compile(
    r"(?i)((?:x-amz-)?(?:signature|credential|security-token|token)['\"]?\s*[:=]\s*b?['\"]?)"
    r"([^'\"&,\s]+)"
)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts pre-signed URLs' secrets and SigV4 headers.

    botocore's and urllib3's own DEBUG logs print request URLs and headers, which
    for a pre-signed URL are a bearer credential.  Add this filter to the handlers
    that may receive them: ``handler.addFilter(ecr_layers.RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_secrets(text: str) -> str:
    """Return *text* with URLs redacted and any signature, credential or token value hidden."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m[1]}{_REDACTED}", redact_text(text))


def secrets_of(url: str) -> list[str]:
    """Return the secret strings in *url*: signature, credential and token values,
    raw and percent-decoded, a password, and the whole query (which holds them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.query] if parts.query else []
    if parts.password:
        found.append(parts.password)
    for pair in parts.query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and _SECRET_PARAM.search(name):
            found += [value, unquote(value)]
    return [s for s in found if len(s) >= 4]


def _redact_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{name}={_REDACTED}" if sep and _SECRET_PARAM.search(name) else pair


def expiry_from_url(url: str) -> dt.datetime | None:
    """Return when a SigV4 pre-signed URL expires, or None if it does not say."""
    # String searches, not parse_qsl (or even regexes): this runs on every call.
    query = url.partition("?")[2]
    date = _query_value(query, "X-Amz-Date=")
    expires = _query_value(query, "X-Amz-Expires=")
    if date is None or expires is None:
        return None  # a CDN URL (pull-through cache) may carry neither
    if len(date) != 16 or not 1 <= len(expires) <= 10:
        return None  # and a hostile answer's megabytes are never a cache key
    return _expiry(date, expires)


@functools.lru_cache(maxsize=64)
def _expiry(date: str, expires: str) -> dt.datetime | None:
    # Cached: the URLs signed in the same second share their date (and their expiry),
    # and building the datetime is most of what this parse costs.
    if date[8] != "T" or date[15] != "Z" or not _digits(date[:8] + date[9:15] + expires):
        return None
    try:
        signed = dt.datetime(
            int(date[:4]),
            int(date[4:6]),
            int(date[6:8]),
            int(date[9:11]),
            int(date[11:13]),
            int(date[13:15]),
            tzinfo=dt.UTC,
        )
        return signed + dt.timedelta(seconds=int(expires))
    except (ValueError, OverflowError):
        return None


def _query_value(query: str, prefix: str) -> str | None:
    """The value of the first ``name=value`` pair in *query* that starts with *prefix*."""
    if query.startswith(prefix):
        start = len(prefix)
    else:
        found = query.find("&" + prefix)
        if found < 0:
            return None
        start = found + 1 + len(prefix)
    end = query.find("&", start)
    return query[start:] if end < 0 else query[start:end]


def _digits(text: str) -> bool:
    # isdigit alone takes other scripts' digits ("٣"), which int() would read.
    return text.isascii() and text.isdigit()


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


def check_download_url(url: str, *, allow_http: bool, layer: LayerRef | None = None) -> None:
    """Refuse a download URL that is not safe to fetch: raise `ConfigurationError`.

    Parsed with urllib3's own parser, the one that will connect: a check made with
    another parser can be shown one host while urllib3 connects to another
    (``http://other:80\\@127.0.0.1/``).  Userinfo and backslashes are refused
    outright; plain http only to a loopback host, unless *allow_http*.
    """
    why = _problem(url, plain_http_anywhere=allow_http)
    if why is not None:
        from ._exceptions import ConfigurationError

        raise ConfigurationError(f"refusing the download URL: {why}", layer=layer)


def check_endpoint_url(url: object) -> None:
    """Raise `ConfigurationError` unless *url* is a usable http(s) endpoint.

    The same rules as download URLs' (urllib3's parser, no userinfo, no backslash),
    except that plain http may go anywhere: API requests are signed one by one.
    """
    why = _problem(url, plain_http_anywhere=True)
    if why is not None:
        from ._exceptions import ConfigurationError

        shown = redact_url(url) if isinstance(url, str) and "://" in url else repr(url)[:100]
        raise ConfigurationError(f"the endpoint URL {shown} cannot be used: {why}")


def _problem(url: object, *, plain_http_anywhere: bool) -> str | None:  # noqa: PLR0911 (a reason a check)
    """Return why *url* may not be used, or None.  Never raises: a parser's exception
    would travel on as the context of ours, with the URL in it."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not isinstance(url, str):
        return f"it is a {type(url).__name__}, not a str"
    if "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "it has a backslash, a space or a control character in it"
    try:
        parsed = parse_url(url)
        port = parsed.port
    except (LocationParseError, ValueError):
        return "it cannot be parsed"
    if parsed.auth is not None:
        return "it has user information in it"
    if not parsed.host or (port is not None and not 0 < port < 65536):
        return "it has no usable host or port"
    scheme = parsed.scheme
    if scheme == "https" or (
        scheme == "http" and (plain_http_anywhere or is_loopback(parsed.host))
    ):
        return None
    if scheme != "http":
        return f"a {scheme or 'schemeless'} URL: only http(s) is fetched"
    return (
        f"plain http to host {parsed.host!r}: only https, or http to a loopback host, "
        "unless allow_http=True"
    )


def is_loopback(host: str | None) -> bool:
    """Return whether *host* names this machine's loopback interface."""
    if host is None:
        return False
    if host == "localhost":
        return True
    import ipaddress  # only downloads check hosts: not on the API call's import path

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
