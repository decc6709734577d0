"""
The `LayerUrl` value object, and keeping pre-signed URLs' secrets out of sight.

A pre-signed URL is a bearer credential: whoever holds it can download the layer,
and its ``X-Amz-Credential`` names the access key.  Anything that renders a URL for
people (reprs, logs, error messages, the command line) goes through `redact_url`.

Secrets are also hidden by value: the signature, credential and security token of
every URL about to be fetched are remembered (`remember`, from `check_download_url`,
the gate every download passes), and `redact_secrets` takes each of them out of any
text, in any form a host may echo it in (raw, percent-encoded once or twice, either
case, XML-escaped), whatever parameter name is or is not next to it.
The log records of ``ecr_layers``, urllib3 and botocore are scrubbed as they are made
(`redact_logs`): urllib3 quotes the URL it requested in its own warnings.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
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

    The records of ``ecr_layers``, urllib3, botocore, aiobotocore and boto3 are
    redacted as they are made, without it.  Add it to a handler that receives other
    loggers' records which may quote a URL ecr-layers fetched, or a signed URL or
    SigV4 header: ``handler.addFilter(ecr_layers.RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """Return *text* with URLs redacted, any signature, credential or token value hidden,
    and every remembered secret (and each of *extra*) hidden in any form."""
    text = _hide_values(text, extra)
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


# -- secrets by value ------------------------------------------------------------------

#: Secret values remembered at most: the newest URLs' (a signature is new with each
#: URL; a credential and a token are shared by many).
REMEMBERED = 256
# Shorter values would redact ordinary words; longer ones are no real URL's.
_MIN_SECRET, _MAX_SECRET = 8, 8192
# The parameters of a SigV4 pre-signed URL whose values are secrets.
_AWS_SECRETS = ("X-Amz-Signature=", "X-Amz-Credential=", "X-Amz-Security-Token=")


@attrs.define
class _Remembered:
    """The secret values of the newest URLs, as they were sent (decoded only when
    a text is scrubbed: decoding a token costs more than the rest of a call)."""

    _values: dict[str, None] = attrs.Factory(dict)  # oldest first
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    _version: int = 0
    #: (version, [(anchor, secret)]): what `_hide_values` scans for, until the next add.
    _cache: tuple[int, list[tuple[str, str]]] = (-1, [])

    def add(self, values: list[str]) -> None:
        with self._lock:
            for value in values:
                if _MIN_SECRET <= len(value) <= _MAX_SECRET:
                    self._values.pop(value, None)  # to the newest end
                    self._values[value] = None
            while len(self._values) > REMEMBERED:
                del self._values[next(iter(self._values))]
            self._version += 1

    def scan(self) -> list[tuple[str, str]]:
        """Every remembered secret, decoded, with its anchor (see `_anchor`)."""
        with self._lock:
            version, values = self._version, list(self._values)
        cached, pairs = self._cache
        if cached != version:
            pairs = [(_anchor(secret), secret) for value in values for secret in _decoded(value)]
            self._cache = (version, pairs)
        return pairs


_remembered = _Remembered()


def remember(url: str) -> None:
    """Remember the secret values in *url*, for `redact_secrets` to hide in any form."""
    # String searches, not a parser, and nothing decoded: this runs for every download.
    query = url.partition("?")[2] if isinstance(url, str) else ""
    values = [v for v in (_query_value(query, name) for name in _AWS_SECRETS) if v]
    if not values and query:  # not SigV4's: a CDN's signed URL, say
        pairs = (pair.partition("=") for pair in query.split("&"))
        values = [v for name, _, v in pairs if v and _SECRET_PARAM.search(name)]
    if values:
        _remembered.add(values)


@functools.lru_cache(maxsize=2 * REMEMBERED)
def _decoded(value: str) -> tuple[str, ...]:
    """The secrets in a query value as sent: decoded, and a credential's key id alone."""
    secret = unquote(value)
    key_id = secret.partition("/")[0]
    return (secret, key_id) if key_id != secret and len(key_id) >= _MIN_SECRET else (secret,)


def _hide_values(text: str, extra: Iterable[str]) -> str:
    """Return *text* with every remembered secret and each of *extra* (at least 4
    characters) replaced by ``REDACTED``, in any of the forms `_pattern` matches."""
    if not text:
        return text
    scan = _remembered.scan()
    more = [(_anchor(secret), secret) for secret in extra if len(secret) >= 4]
    folded = text.lower()
    # An anchor survives every encoding: a cheap test before the secret's regex.
    hits = {secret for anchor, secret in (*scan, *more) if anchor in folded}
    for secret in sorted(hits, key=len, reverse=True):  # a credential before its key id
        text = _pattern(secret).sub(_REDACTED, text)
    return text


@functools.lru_cache(maxsize=4 * REMEMBERED)
def _anchor(secret: str) -> str:
    """*secret*'s longest alphanumeric run, in lower case: in every form of it."""
    return max(re.findall(r"[A-Za-z0-9]+", secret), key=len, default="").lower()


@functools.lru_cache(maxsize=2 * REMEMBERED)
def _pattern(secret: str) -> re.Pattern[str]:
    """A regex that matches *secret* in any form: each character raw, percent-encoded
    once or twice or as an XML character reference, ``+`` also form-decoded; letters
    in either case."""
    return re.compile("".join(map(_char_forms, secret)), re.IGNORECASE)


@functools.lru_cache(maxsize=128)
def _char_forms(char: str) -> str:
    if char.isascii() and char.isalnum():
        return char
    escaped = "".join(f"%{byte:02X}" for byte in char.encode())
    forms = [
        re.escape(char),
        escaped,
        escaped.replace("%", "%25"),
        f"&#0*{ord(char)};",
        f"&#x0*{ord(char):x};",
    ]
    if char in _XML_NAMED:
        forms.append(f"&{_XML_NAMED[char]};")
    if char == "+":
        forms += [" ", "%20"]  # "+" is how a form encodes a space
    return f"(?:{'|'.join(forms)})"


_XML_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def scrub(exc: BaseException, extra: Iterable[str] = ()) -> None:
    """Hide secrets (as `redact_secrets` does, with *extra*) in *exc*, its args, notes,
    attributes and cause chain, in place: an exception is an error tracker's record."""
    secrets = list(extra)
    _scrub(exc, lambda text: redact_secrets(text, secrets), set())


def _scrub(value: Any, clean: Callable[[str], str], seen: set[int]) -> Any:
    """Return *value* cleaned: strings and bytes rebuilt, containers and exceptions in place."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bytes):
        text = value.decode("latin-1")
        cleaned = clean(text)
        return value if cleaned == text else cleaned.encode("latin-1", "replace")
    if id(value) in seen or not isinstance(value, BaseException | dict | list | tuple):
        return value
    seen.add(id(value))
    if isinstance(value, tuple):
        return tuple(_scrub(item, clean, seen) for item in value)
    if isinstance(value, list):
        value[:] = [_scrub(item, clean, seen) for item in value]
    elif isinstance(value, dict):
        value.update({key: _scrub(item, clean, seen) for key, item in value.items()})
    else:
        value.args = _scrub(value.args, clean, seen)
        for name, item in list(vars(value).items()):
            cleaned = _scrub(item, clean, seen)
            if cleaned is not item:  # set only what changed: some classes refuse setattr
                setattr(value, name, cleaned)
        for link in (value.__cause__, value.__context__):
            _scrub(link, clean, seen)
    return value


def redact_record(record: logging.LogRecord) -> None:
    """Hide secrets in *record*'s message and in the exception it carries, in place."""
    try:
        message = record.getMessage()
    except Exception:  # reported by the handler that formats it, as ever
        return
    cleaned = redact_secrets(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        try:
            scrub(record.exc_info[1])
        except Exception:  # an exception that refuses to be changed is not shown
            record.exc_info = None
            record.exc_text = "(exception not shown: it could not be scrubbed of secrets)"
    if record.exc_text:
        record.exc_text = redact_secrets(record.exc_text)


#: The loggers whose records may quote a pre-signed URL: ours and our transports'.
_LOGGERS = ("ecr_layers", "urllib3", "botocore", "aiobotocore", "boto3")


def redact_logs() -> None:
    """Scrub every record of the `_LOGGERS` as it is made, before any filter or handler.

    A record factory, not a filter: a logger's filters see only the records logged
    on that logger itself, never its children's (``urllib3.connectionpool``), and the
    handlers are the application's.  It calls the factory it found, so one installed
    before keeps working, and so does one installed after that calls the one it found
    (as the logging documentation asks).  Other loggers' records cost a name test.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_ecr_layers", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(_LOGGERS):
            redact_record(record)
        return record

    make._ecr_layers = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)


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
    # Remembered here, where every download passes before its first request, rather
    # than when a lookup answers: no cost to a call that only looks a URL up, and
    # a batch's lookups cannot push out the URLs being fetched.
    remember(url)
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
