"""
Map botocore's exceptions to ecr-layers' typed ones.

Service errors are mapped by ``Error.Code``, one table, not by ``client.exceptions``
class identity: boto3's modeled exception classes are made per client, so they cannot
be caught statically, and they do not pickle to themselves.
"""

from __future__ import annotations

from typing import Any

from botocore import exceptions as bce
from botocore.parsers import ResponseParserError

from ._exceptions import (
    AccessDenied,
    ConfigurationError,
    CredentialsError,
    ECRError,
    EndpointTimeout,
    EndpointUnreachable,
    InvalidParameter,
    InvalidResponse,
    LayerInaccessible,
    LayersNotFound,
    RepositoryNotFound,
    ServerError,
    Throttled,
    UnableToGetUpstreamLayer,
    UnknownError,
)

#: Error code -> class.  The first block is what the service model lists for
#: GetDownloadUrlForLayer (a test fails if the model grows one this table lacks);
#: the rest are the common errors every AWS JSON service can answer.
BY_CODE: dict[str, type[ECRError]] = {
    "InvalidParameterException": InvalidParameter,
    "LayerInaccessibleException": LayerInaccessible,
    "LayersNotFoundException": LayersNotFound,
    "RepositoryNotFoundException": RepositoryNotFound,
    "ServerException": ServerError,
    "UnableToGetUpstreamLayerException": UnableToGetUpstreamLayer,
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
    "LimitExceededException": Throttled,
    "SlowDown": Throttled,
    "PriorRequestNotComplete": Throttled,
    "EC2ThrottledException": Throttled,
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

_MAX_MESSAGE = 300


def from_client_error(exc: bce.ClientError, context: dict[str, Any]) -> ECRError:
    """Return the typed error for a service error response."""
    response: dict[str, Any] = exc.response  # type: ignore[assignment]
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "")
    status = meta.get("HTTPStatusCode")
    cls = BY_CODE.get(code)
    if cls is None:
        if isinstance(status, int) and status >= 500:
            # A proxy's HTML 502 or an empty 503 has no modeled code; botocore
            # then puts the status itself in Code.
            cls = ServerError
        elif status == 429:
            cls = Throttled
        else:
            cls = UnknownError
    return cls(
        _message(error.get("Message"), code, status),
        code=code or cls.default_code,
        request_id=meta.get("RequestId"),
        http_status=status,
        **context,
    )


def from_botocore_error(exc: Exception, context: dict[str, Any]) -> ECRError:
    """Return the typed error for a botocore error raised before or around a response."""
    cls = next(
        (ours for theirs, ours in BY_BOTOCORE_CLASS if isinstance(exc, theirs)), UnknownError
    )
    return cls(str(exc), code=type(exc).__name__, **context)


def _message(raw: object, code: str, status: object) -> str:
    text = " ".join(str(raw or "").split())
    if not text or text.startswith("<"):
        # An HTML error page says nothing a caller can use, and can be long.
        return f"the endpoint answered HTTP {status} without a usable error body"
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text
