"""
The one error map: botocore's exceptions, the download host's answers and the
transport's failures, each to one typed ecr-layers error with one code scheme.

Service errors and the download host's S3-style XML errors are mapped by their
error code through one table (`BY_CODE`), then by HTTP status; lower-layer
exceptions by class (`BY_BOTOCORE_CLASS`, `BY_TRANSPORT_CLASS`), most specific
first.  Class identity of boto3's modeled exceptions is never used: they are made
per client, cannot be caught statically, and do not pickle to themselves.

``code`` is the error code the service or the download host sent, else the class's
`ECRError.default_code`.  Messages are ours: a lower layer's text can quote a
pre-signed URL (a bearer credential) or an endpoint's password, so the only
lower-layer text let through is redacted, and every mapped exception's cause chain
is scrubbed of the URL's secrets (`scrub`).
"""

from __future__ import annotations

import http.client
import re
import socket
import sys
from collections.abc import Mapping
from typing import Any

import urllib3.exceptions as u3
from botocore import exceptions as bce
from botocore.parsers import ResponseParserError

from ._exceptions import (
    AccessDenied,
    ConfigurationError,
    CredentialsError,
    DownloadError,
    DownloadUrlExpired,
    ECRError,
    EndpointTimeout,
    EndpointUnreachable,
    ImageError,
    ImageInaccessible,
    ImageNotFound,
    ImageRef,
    ImageReferencedByManifestList,
    ImageTagDoesNotMatchDigest,
    InvalidParameter,
    InvalidResponse,
    KmsError,
    LayerError,
    LayerInaccessible,
    LayerRef,
    LayersNotFound,
    LimitExceeded,
    RepositoryNotFound,
    ServerError,
    Throttled,
    UnableToGetUpstreamImage,
    UnableToGetUpstreamLayer,
    UnknownError,
    UpstreamAccessDenied,
    UpstreamTooManyRequests,
    UpstreamUnavailable,
)
from ._url import URL_IN_TEXT, redact_secrets, scrub, secrets_of
from ._watchdog import AnswerTooLarge

#: Error code -> class.  The first block is what the service model lists for
#: GetDownloadUrlForLayer and BatchGetImage (a test fails if the model grows one
#: this table lacks); the rest are the common errors every AWS JSON service can answer.
BY_CODE: dict[str, type[ECRError]] = {
    "InvalidParameterException": InvalidParameter,
    "LayerInaccessibleException": LayerInaccessible,
    "LayersNotFoundException": LayersNotFound,
    "RepositoryNotFoundException": RepositoryNotFound,
    "ServerException": ServerError,
    "UnableToGetUpstreamLayerException": UnableToGetUpstreamLayer,
    "UnableToGetUpstreamImageException": UnableToGetUpstreamImage,
    # A quota, not a rate: botocore's standard mode retries it as throttling, as we do.
    "LimitExceededException": LimitExceeded,
    # Common errors.
    "AccessDeniedException": AccessDenied,
    "AccessDenied": AccessDenied,
    "UnauthorizedOperation": AccessDenied,
    "UnrecognizedClientException": CredentialsError,
    "InvalidSignatureException": CredentialsError,
    "IncompleteSignature": CredentialsError,
    "MissingAuthenticationTokenException": CredentialsError,
    "MissingAuthenticationToken": CredentialsError,
    "ExpiredTokenException": CredentialsError,
    "ExpiredToken": CredentialsError,
    "InvalidClientTokenId": CredentialsError,
    "RequestExpired": CredentialsError,
    "SignatureDoesNotMatch": CredentialsError,
    "ValidationException": InvalidParameter,
    "InternalFailure": ServerError,
    "InternalError": ServerError,
    "InternalServerError": ServerError,
    "ServiceUnavailable": ServerError,
    "ServiceUnavailableException": ServerError,
    "RequestTimeout": EndpointTimeout,
    "RequestTimeoutException": EndpointTimeout,
    # botocore's standard retry mode treats these as throttling; so do we.
    "Throttling": Throttled,
    "ThrottlingException": Throttled,
    "ThrottledException": Throttled,
    "RequestThrottledException": Throttled,
    "RequestThrottled": Throttled,
    "TooManyRequestsException": Throttled,
    "ProvisionedThroughputExceededException": Throttled,
    "TransactionInProgressException": Throttled,
    "RequestLimitExceeded": Throttled,
    "BandwidthLimitExceeded": Throttled,
    "SlowDown": Throttled,
    "PriorRequestNotComplete": Throttled,
    "EC2ThrottledException": Throttled,
    # What the download host (S3, or a CDN in front of a pull-through cache) answers.
    "NoSuchKey": LayersNotFound,
    "NoSuchBucket": LayersNotFound,
    "ServiceUnavailableError": ServerError,
}

#: BatchGetImage's per-image failure codes (the model's ``ImageFailureCode`` enum; a
#: test fails if it grows one this table lacks) -> class.
BY_FAILURE_CODE: dict[str, type[ECRError]] = {
    "ImageNotFound": ImageNotFound,
    "ImageTagDoesNotMatchDigest": ImageTagDoesNotMatchDigest,
    "InvalidImageDigest": InvalidParameter,
    "InvalidImageTag": InvalidParameter,
    "MissingDigestAndTag": InvalidParameter,
    "ImageReferencedByManifestList": ImageReferencedByManifestList,
    "ImageInaccessible": ImageInaccessible,
    "KmsError": KmsError,
    "UpstreamAccessDenied": UpstreamAccessDenied,
    "UpstreamTooManyRequests": UpstreamTooManyRequests,
    "UpstreamUnavailable": UpstreamUnavailable,
}

#: Everything botocore raises that is not a service's error response.
BOTOCORE_ERRORS = (bce.BotoCoreError, ResponseParserError)

#: botocore's own (non-service) errors, most specific first: the timeout classes
#: are also ConnectionError subclasses and must win over them.
BY_BOTOCORE_CLASS: tuple[tuple[type[Exception], type[ECRError]], ...] = (
    (bce.ConnectTimeoutError, EndpointTimeout),
    (bce.ReadTimeoutError, EndpointTimeout),
    (bce.ConnectionError, EndpointUnreachable),
    (bce.HTTPClientError, EndpointUnreachable),
    (bce.NoCredentialsError, CredentialsError),
    (bce.PartialCredentialsError, CredentialsError),
    (bce.CredentialRetrievalError, CredentialsError),
    (bce.NoAuthTokenError, CredentialsError),
    (bce.TokenRetrievalError, CredentialsError),
    (bce.SSOError, CredentialsError),
    (bce.ParamValidationError, InvalidParameter),
    (ResponseParserError, InvalidResponse),
    (bce.NoRegionError, ConfigurationError),
    (bce.ProfileNotFound, ConfigurationError),
    (bce.InvalidRegionError, ConfigurationError),
    (bce.InvalidEndpointConfigurationError, ConfigurationError),
    (bce.UnknownServiceError, ConfigurationError),
    (bce.InvalidConfigError, ConfigurationError),
)

#: urllib3's, http.client's and the socket layer's failures on the download path,
#: most specific first (urllib3 2 makes NewConnectionError a ConnectTimeoutError).
BY_TRANSPORT_CLASS: tuple[tuple[type[BaseException], type[ECRError]], ...] = (
    # A URL that cannot be used will not become usable by retrying.
    (u3.LocationValueError, ConfigurationError),
    (u3.ProxySchemeUnsupported, ConfigurationError),
    (u3.NewConnectionError, EndpointUnreachable),
    (u3.TimeoutError, EndpointTimeout),
    (u3.HTTPError, EndpointUnreachable),
    (http.client.HTTPException, EndpointUnreachable),
    (socket.timeout, EndpointTimeout),  # TimeoutError since 3.10
    (OSError, EndpointUnreachable),
)


_MAX_MESSAGE = 300
_XML_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{1,300})</Message>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def from_botocore(
    exc: Exception, layer: LayerRef | None, image: ImageRef | None = None
) -> ECRError | None:
    """Return the typed error for anything a botocore call raised; None if not botocore's."""
    too_large = _answer_too_large(exc)
    if too_large is not None:
        return InvalidResponse(
            str(too_large), code=InvalidResponse.default_code, layer=layer, image=image
        )
    if isinstance(exc, bce.ClientError):
        return from_client_error(exc, layer, image)
    if isinstance(exc, BOTOCORE_ERRORS):
        return from_botocore_error(exc, layer, image)
    if isinstance(exc, RecursionError) and _passed_through(exc, _PARSERS):
        # botocore's json.loads of an answer nested deeper than Python's stack allows.
        return InvalidResponse(
            "the service's answer nests JSON deeper than Python's recursion limit "
            f"({sys.getrecursionlimit()}) allows",
            code=InvalidResponse.default_code,
            layer=layer,
            image=image,
        )
    if isinstance(exc, _PARSER_SLIPS) and _raised_in(exc, _PARSERS):
        # botocore's parser assumes the answer has the model's shape: a string where
        # a structure belongs ends in AttributeError, not ResponseParserError; an
        # error code that is a list, in a TypeError where the model is looked up.
        return InvalidResponse(
            f"the service's answer does not have the model's shape ({type(exc).__name__})",
            code=InvalidResponse.default_code,
            layer=layer,
            image=image,
        )
    return None


def _answer_too_large(exc: Exception) -> AnswerTooLarge | None:
    """The cap's refusal, raised as it is or wrapped: botocore wraps what a send
    raises in HTTPClientError, and lets what a body's read raises through."""
    if isinstance(exc, AnswerTooLarge):
        return exc
    if not isinstance(exc, bce.HTTPClientError):
        return None
    inner = exc.kwargs.get("error")
    return inner if isinstance(inner, AnswerTooLarge) else None


# What botocore raises while reading an answer of the wrong shape, and where: its
# parsers, and the model and error factory that the parsed error code is looked up in.
_PARSER_SLIPS = (AttributeError, TypeError, KeyError, IndexError, ValueError)
_PARSERS = (
    "botocore.parsers",
    "aiobotocore.parsers",
    "botocore.model",
    "botocore.errorfactory",
)


def _passed_through(exc: BaseException, modules: tuple[str, ...]) -> bool:
    """Whether *exc* was raised in, or under a call from, code in one of *modules*."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") in modules:
            return True
        tb = tb.tb_next
    return False


def _raised_in(exc: BaseException, modules: tuple[str, ...]) -> bool:
    """Whether *exc* was raised by code in one of *modules* (its innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__") in modules


def from_image_failure(
    failure: Mapping[str, Any], image: ImageRef, request_id: str | None
) -> ECRError:
    """Return the typed error for one of BatchGetImage's per-image failures."""
    code = _clean(str(failure.get("failureCode") or ""))
    cls = _fitting(BY_FAILURE_CODE.get(code, UnknownError), None, image)
    reason = _clean(str(failure.get("failureReason") or "")) or "(no reason given)"
    extra: dict[str, Any] = {"parameter": "reference"} if cls is InvalidParameter else {}
    return cls(
        f"no image {image.reference[:80]!r} in repository {image.repository_name!r} could be "
        f"returned: {reason}",
        code=code or cls.default_code,
        request_id=request_id,
        image=image,
        **extra,
    )


def _fitting(cls: type[ECRError], layer: LayerRef | None, image: ImageRef | None) -> type[ECRError]:
    # A layer's error from an image call (or the reverse) is not something the
    # service documents; it is reported, not forced into a class that needs context.
    if (issubclass(cls, LayerError) and layer is None) or (
        issubclass(cls, ImageError) and image is None
    ):
        return UnknownError
    return cls


def from_client_error(
    exc: bce.ClientError, layer: LayerRef | None, image: ImageRef | None = None
) -> ECRError:
    """Return the typed error for a service error response."""
    response: dict[str, Any] = exc.response  # type: ignore[assignment]
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "")
    status = meta.get("HTTPStatusCode")
    cls = _by_code_then_status(code, status if isinstance(status, int) else None, download=False)
    cls = _fitting(cls, layer, image)
    return cls(
        _message(error.get("Message"), status),
        code=code or cls.default_code,
        request_id=meta.get("RequestId"),
        http_status=status,
        layer=layer,
        image=image,
        retry_after=_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after")),
    )


def from_botocore_error(
    exc: Exception, layer: LayerRef | None, image: ImageRef | None = None
) -> ECRError:
    """Return the typed error for a botocore error raised before or around a response."""
    cls = next(
        (ours for theirs, ours in BY_BOTOCORE_CLASS if isinstance(exc, theirs)), UnknownError
    )
    if isinstance(exc, ValueError) and cls is UnknownError:
        cls = ConfigurationError  # botocore's "Invalid endpoint: ..." is a plain ValueError
    scrub(exc, _endpoint_secrets(exc))
    return cls(_clean(str(exc)), code=cls.default_code, layer=layer, image=image)


def from_download_answer(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    layer: LayerRef,
    *,
    url_expired: bool,
) -> ECRError:
    """Return the typed error for the download host's non-2xx answer."""
    code_match, message_match = _XML_CODE.search(body), _XML_MESSAGE.search(body)
    # Recognise S3's XML error body, but depend on it for nothing: a CDN in front of
    # a pull-through cache may answer in any format.
    code = code_match[1].decode("utf-8", "replace") if code_match else ""
    message = message_match[1].decode("utf-8", "replace") if message_match else ""
    if status == 403 and (url_expired or message.lower().startswith("request has expired")):
        return DownloadUrlExpired("the download URL expired", http_status=status, layer=layer)
    cls = _by_code_then_status(code, status, download=True)
    if cls is UnknownError or not (cls.retryable or issubclass(cls, _HOST_CLASSES)):
        cls = DownloadError
    text = f"the download host answered HTTP {status}" + (f": {_clean(message)}" if message else "")
    return cls(
        text,
        code=_clean(code) or cls.default_code,
        http_status=status,
        layer=layer,
        retry_after=_retry_after(headers.get("Retry-After")),
    )


#: What the download host's answers can mean; anything else from it is a DownloadError.
_HOST_CLASSES = (AccessDenied, LayersNotFound, DownloadError)


def from_transport_error(exc: BaseException, layer: LayerRef, url: str) -> ECRError:
    """Return the typed error for a failure of the connection to the download host.

    *exc*, with its whole cause chain, is first scrubbed of *url*'s secrets: it
    becomes the typed error's ``__cause__``, and error trackers record those.
    """
    scrub(exc, secrets_of(url))
    cls = next(
        (ours for theirs, ours in BY_TRANSPORT_CLASS if isinstance(exc, theirs)), UnknownError
    )
    if cls is ConfigurationError:
        message = "the download URL cannot be used (unparseable, a bad port or scheme)"
    elif cls is EndpointTimeout:
        message = "the download host did not answer in time"
    else:
        message = "the connection to the download host failed or was cut short"
    return cls(message, layer=layer)


def _endpoint_secrets(exc: Exception) -> list[str]:
    # botocore keeps the endpoint URL in its exceptions' kwargs, or in the text of a
    # bare ValueError; a password in it (http://user:pw@host) must not travel on.
    kwargs = getattr(exc, "kwargs", None) or {}
    texts = [v for v in kwargs.values() if isinstance(v, str)] + [str(exc)]
    urls = [m.group() for text in texts for m in URL_IN_TEXT.finditer(text)]
    return [secret for url in urls for secret in secrets_of(url)]


#: What an HTTP status means when no code says more.  A proxy's HTML 502 or an empty
#: 503 has no modeled code (botocore then puts the status itself in Code).
_BY_STATUS: dict[int, type[ECRError]] = {
    429: Throttled,
    **dict.fromkeys(range(500, 600), ServerError),
}
#: The download host's statuses, which say more than the API's would.
_BY_DOWNLOAD_STATUS: dict[int, type[ECRError]] = {
    **_BY_STATUS,
    401: AccessDenied,
    403: AccessDenied,
    404: LayersNotFound,  # the layer's bytes are not where its URL points
    410: LayersNotFound,
}


def _by_code_then_status(code: str, status: int | None, *, download: bool) -> type[ECRError]:
    by_status = _BY_DOWNLOAD_STATUS if download else _BY_STATUS
    return BY_CODE.get(code) or by_status.get(status or 0, UnknownError)


def _retry_after(value: object) -> float | None:
    # Only the delay-seconds form: an HTTP date needs a clock we cannot trust to match.
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _message(raw: object, status: object) -> str:
    text = " ".join(str(raw or "").split())
    if not text or text.startswith("<"):
        # An HTML error page says nothing a caller can use, and can be long.
        return f"the endpoint answered HTTP {status} without a usable error body"
    return _clean(text)


def _clean(text: str) -> str:
    """Return server-supplied *text* without control characters, redacted and bounded."""
    # redact_secrets, not only whole URLs: a host may echo "GET /k?X-Amz-Signature=…".
    text = _CONTROL.sub("", redact_secrets(text))
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text
