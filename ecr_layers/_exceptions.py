"""
Every failure ecr-layers lets a caller see, as one tree.

::

    ECRError
    ├── InvalidParameter (also ValueError)   InvalidParameterException, or rejected locally
    ├── LayerInaccessible                    LayerInaccessibleException
    ├── LayersNotFound                       LayersNotFoundException
    ├── RepositoryNotFound                   RepositoryNotFoundException
    ├── UnableToGetUpstreamLayer             UnableToGetUpstreamLayerException
    ├── AccessDenied                         AccessDeniedException and kin
    ├── CredentialsError                     missing, expired or refused credentials
    ├── ConfigurationError                   no region, unknown profile, bad endpoint
    ├── InvalidResponse                      a 200 answer that cannot be used
    ├── DownloadError                        fetching the layer's bytes went wrong
    │   ├── DigestMismatch                   the bytes do not hash to the digest
    │   └── UnsupportedDigest                a digest that cannot be verified
    ├── UnknownError                         a code nobody has mapped yet
    └── TransientError                       retried by the retry policy
        ├── ServerError                      ServerException, or any 5xx
        ├── Throttled                        throttling codes, HTTP 429
        ├── EndpointUnreachable              connection refused, reset or closed
        ├── EndpointTimeout                  connect or read timeout
        └── DownloadUrlExpired               renewed, and the download goes on

Context travels as attributes, not only in the message, and ``__cause__`` is the
botocore exception where there was one.  The classes pickle to themselves with all
their attributes, which boto3's per-session modeled exceptions do not.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "ConfigurationError",
    "CredentialsError",
    "DigestMismatch",
    "DownloadError",
    "DownloadUrlExpired",
    "ECRError",
    "EndpointTimeout",
    "EndpointUnreachable",
    "InvalidParameter",
    "InvalidResponse",
    "LayerInaccessible",
    "LayersNotFound",
    "RepositoryNotFound",
    "ServerError",
    "Throttled",
    "TransientError",
    "UnableToGetUpstreamLayer",
    "UnknownError",
    "UnsupportedDigest",
]


class ECRError(Exception):
    """Base of every error ecr-layers raises."""

    #: The error code used when none came from the service.
    default_code: ClassVar[str] = "ECRError"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        repository_name: str | None = None,
        layer_digest: str | None = None,
        registry_id: str | None = None,
        attempts: int = 0,
    ) -> None:
        # Only the message goes to args: pickling calls cls(*args) and then
        # restores __dict__, so every keyword comes back as it was.
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.request_id = request_id
        self.http_status = http_status
        self.repository_name = repository_name
        self.layer_digest = layer_digest
        self.registry_id = registry_id
        #: Requests sent before this error was raised (0 for a local error).
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [f"code {self.code}"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.repository_name is not None:
            parts.append(f"repository {self.repository_name!r}")
        if self.layer_digest is not None:
            parts.append(f"layer {_shorten(self.layer_digest)!r}")
        if self.registry_id is not None:
            parts.append(f"registry {self.registry_id}")
        if self.request_id is not None:
            parts.append(f"request id {self.request_id}")
        if self.attempts > 1:
            parts.append(f"after {self.attempts} attempts")
        message = self.message or "(no message)"
        return f"{message} ({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidParameter(ECRError, ValueError):
    """An input broke the API's documented rules (checked locally or by the service)."""

    default_code = "InvalidParameterException"

    def __init__(
        self, message: str = "", *, parameter: str | None = None, **kwargs: object
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        #: The API field at fault: ``repositoryName``, ``layerDigest`` or ``registryId``.
        self.parameter = parameter


class LayerInaccessible(ECRError):
    """The layer exists but no image references it; it may be garbage-collected."""

    default_code = "LayerInaccessibleException"


class LayersNotFound(ECRError):
    """The digest is unknown, or not a layer of this repository."""

    default_code = "LayersNotFoundException"


class RepositoryNotFound(ECRError):
    """No such repository in this registry."""

    default_code = "RepositoryNotFoundException"


class UnableToGetUpstreamLayer(ECRError):
    """A pull-through cache could not fetch the layer from its upstream registry."""

    default_code = "UnableToGetUpstreamLayerException"


class AccessDenied(ECRError):
    """The credentials are valid but not allowed to do this."""

    default_code = "AccessDeniedException"


class CredentialsError(ECRError):
    """No credentials were found, or the service refused them (unknown, expired, bad signature)."""

    default_code = "CredentialsError"


class ConfigurationError(ECRError):
    """The client could not be set up: no region, an unknown profile, a bad endpoint."""

    default_code = "ConfigurationError"


class InvalidResponse(ECRError):
    """The service answered 200 with something that is not a usable download URL."""

    default_code = "InvalidResponse"


class DownloadError(ECRError):
    """Fetching the layer's bytes from its download URL failed."""

    default_code = "DownloadError"


class DigestMismatch(DownloadError):
    """The downloaded bytes do not hash to the layer's digest; nothing was kept."""

    default_code = "DigestMismatch"

    def __init__(
        self,
        message: str = "",
        *,
        expected: str | None = None,
        actual: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.expected = expected
        self.actual = actual


class UnsupportedDigest(DownloadError, ValueError):
    """The digest is not an OCI ``sha256``/``sha512`` digest, so the bytes cannot be verified."""

    default_code = "UnsupportedDigest"


class UnknownError(ECRError):
    """The service answered with an error code that ecr-layers does not know yet."""

    default_code = "UnknownError"


class TransientError(ECRError):
    """A failure that may go away on its own; the retry policy retries these."""

    default_code = "TransientError"


class ServerError(TransientError):
    """The service failed (``ServerException``, or any 5xx answer)."""

    default_code = "ServerException"


class Throttled(TransientError):
    """The service asked the client to slow down."""

    default_code = "ThrottlingException"


class EndpointUnreachable(TransientError):
    """The endpoint could not be reached, or closed the connection."""

    default_code = "EndpointUnreachable"


class EndpointTimeout(TransientError):
    """Connecting to the endpoint, or reading its answer, timed out."""

    default_code = "EndpointTimeout"


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


class DownloadUrlExpired(TransientError):
    """The download URL expired mid-download; a fresh one is fetched and the download goes on."""

    default_code = "RequestExpired"
