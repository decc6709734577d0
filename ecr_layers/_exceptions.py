"""
Every failure ecr-layers lets a caller see, as one tree.

::

    ECRError
    ├── InvalidParameter (also ValueError)   InvalidParameterException, or rejected locally
    ├── ConfigurationError                   no region, unknown profile, bad endpoint or URL
    ├── AccessDenied                         AccessDeniedException and kin; 401/403 downloads
    ├── CredentialsError                     missing, expired or refused credentials
    ├── RepositoryNotFound                   RepositoryNotFoundException
    ├── InvalidResponse                      a 200 answer that cannot be used
    ├── UnknownError                         a code nobody has mapped yet
    ├── ImageError                           about one image: repository_name, reference are str
    │   ├── ImageNotFound                    ImageNotFound failure
    │   │   └── ImageTagDoesNotMatchDigest   ImageTagDoesNotMatchDigest failure
    │   ├── PlatformNotFound                 the index offers no manifest for the platform
    │   ├── UnsupportedMediaType             schema 1, or a manifest type ecr-layers cannot read
    │   ├── FileNotInImage (FileNotFoundError)  read_file: no such file in the image
    │   ├── UnableToGetUpstreamImage         UnableToGetUpstreamImageException
    │   ├── ImageReferencedByManifestList    ImageReferencedByManifestList failure
    │   ├── ImageInaccessible                ImageInaccessible failure
    │   ├── KmsError                         KmsError failure
    │   └── UpstreamAccessDenied             UpstreamAccessDenied failure
    ├── LayerError                           about one layer: repository_name, layer_digest are str
    │   ├── LayerInaccessible                LayerInaccessibleException
    │   ├── LayersNotFound                   LayersNotFoundException; 404 from the download host
    │   ├── UnableToGetUpstreamLayer         UnableToGetUpstreamLayerException
    │   ├── UnsafeLayer                      a layer entry that would write outside the root
    │   └── DownloadError                    fetching the layer's bytes went wrong
    │       ├── DigestMismatch               the bytes do not hash to the digest
    │       ├── UnsupportedDigest (ValueError)  a digest that cannot be verified
    │       ├── BlobTooLarge                 a manifest, config or unpacked image over its cap
    │       └── DestinationError (OSError)   the destination cannot be written
    └── TransientError                       retried by the retry policy
        ├── ServerError                      ServerException, or any 5xx
        ├── Throttled                        throttling codes, SlowDown, HTTP 429
        │   ├── LimitExceeded                LimitExceededException
        │   └── UpstreamTooManyRequests (ImageError)  UpstreamTooManyRequests failure
        ├── UpstreamUnavailable (ImageError) UpstreamUnavailable failure
        ├── EndpointUnreachable              connection refused, reset or cut short
        ├── EndpointTimeout                  connect or read timeout, or too slow a transfer
        └── DownloadUrlExpired (LayerError)  renewed, and the download goes on

Context travels as attributes, not only in the message: the layer a call was about
is one frozen `LayerRef` (``layer``), whose fields are also the error's
``repository_name``, ``layer_digest`` and ``registry_id``; the image a call was
about is an `ImageRef` (``image``), whose ``reference`` is the tag or digest asked
for.  A blob of an image (its manifest, config or a layer) is named by both.  ``__cause__`` is the
lower-layer exception where there was one, with any URL secret scrubbed from it.
The classes pickle to themselves with all their attributes, which boto3's
per-session modeled exceptions do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs

__all__ = [
    "AccessDenied",
    "BlobTooLarge",
    "ConfigurationError",
    "CredentialsError",
    "DestinationError",
    "DigestMismatch",
    "DownloadError",
    "DownloadUrlExpired",
    "ECRError",
    "EndpointTimeout",
    "EndpointUnreachable",
    "FileNotInImage",
    "ImageError",
    "ImageInaccessible",
    "ImageNotFound",
    "ImageRef",
    "ImageReferencedByManifestList",
    "ImageTagDoesNotMatchDigest",
    "InvalidParameter",
    "InvalidResponse",
    "KmsError",
    "LayerError",
    "LayerInaccessible",
    "LayerRef",
    "LayersNotFound",
    "LimitExceeded",
    "PlatformNotFound",
    "RepositoryNotFound",
    "ServerError",
    "Throttled",
    "TransientError",
    "UnableToGetUpstreamImage",
    "UnableToGetUpstreamLayer",
    "UnknownError",
    "UnsafeLayer",
    "UnsupportedDigest",
    "UnsupportedMediaType",
    "UpstreamAccessDenied",
    "UpstreamTooManyRequests",
    "UpstreamUnavailable",
]


@attrs.frozen
class LayerRef:
    """The layer a call was about: what every layer-specific error carries."""

    repository_name: str
    layer_digest: str
    registry_id: str | None = None


@attrs.frozen
class ImageRef:
    """The image a call was about: its repository and the tag or digest asked for."""

    repository_name: str
    reference: str
    registry_id: str | None = None


if TYPE_CHECKING:  # for the checker only: not worth classes made at every import
    from typing import Required, TypedDict, Unpack

    class _Common(TypedDict, total=False):
        code: str | None
        request_id: str | None
        http_status: int | None
        attempts: int
        retry_after: float | None

    class Context(_Common, total=False):
        """The context any error may carry, as `ECRError` takes it: typed keywords, the same
        for every class, so that a subclass passes them on as one value."""

        layer: LayerRef | None
        image: ImageRef | None

    class _ImageOwn(_Common, total=False):  # ImageError's, less the image it takes itself
        layer: LayerRef | None

    class _LayerOwn(_Common, total=False):  # LayerError's, less the layer it takes itself
        image: ImageRef | None

    class ImageContext(_ImageOwn, total=False):
        """`Context` for an `ImageError`, whose image is required."""

        image: Required[ImageRef | None]

    class LayerContext(_LayerOwn, total=False):
        """`Context` for a `LayerError`, whose layer is required."""

        layer: Required[LayerRef | None]


def _restore(cls: type[ECRError], state: dict[str, Any]) -> ECRError:
    # Rebuilt without calling __init__, so that classes whose constructors require
    # a keyword (LayerError's layer) pickle like the others.
    exc = cls.__new__(cls)
    exc.args = (state.get("message", ""),)
    for name, value in state.items():
        setattr(exc, name, value)  # not __dict__.update: OSError's errno is a slot
    return exc


class ECRError(Exception):
    """Base of every error ecr-layers raises."""

    #: The code used when none came from the service or the download host: the AWS
    #: exception's name for the classes that mirror one, else the class's own name.
    default_code: ClassVar[str] = "ECRError"
    #: Whether the retry policy retries this kind of failure.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        layer: LayerRef | None = None,
        image: ImageRef | None = None,
        attempts: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.request_id = request_id
        self.http_status = http_status
        #: The layer the call was about, or None for errors about no layer in particular.
        self.layer = layer
        #: The image the call was about, or None for errors about no image in particular.
        self.image = image
        #: Requests sent before this error was raised (0 for a local error).
        self.attempts = attempts
        #: Seconds the server asked the client to wait (``Retry-After``), if it did.
        self.retry_after = retry_after

    @property
    def repository_name(self) -> str | None:
        """The repository the call was about."""
        about = self.layer or self.image
        return about.repository_name if about is not None else None

    @property
    def reference(self) -> str | None:
        """The image's tag or digest the call was about."""
        return self.image.reference if self.image is not None else None

    @property
    def layer_digest(self) -> str | None:
        """The layer digest the call was about."""
        return self.layer.layer_digest if self.layer is not None else None

    @property
    def registry_id(self) -> str | None:
        """The registry (account) id the call named, if it named one."""
        about = self.layer or self.image
        return about.registry_id if about is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(self.__dict__)))

    def __str__(self) -> str:
        parts = [f"code {self.code}"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.repository_name is not None:
            parts.append(f"repository {self.repository_name!r}")
        if self.image is not None:
            parts.append(f"image {_shorten(self.image.reference)!r}")
        if self.layer is not None:
            blob = "blob" if self.image is not None else "layer"
            parts.append(f"{blob} {_shorten(self.layer.layer_digest)!r}")
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
        self, message: str = "", *, parameter: str | None = None, **context: Unpack[Context]
    ) -> None:
        super().__init__(message, **context)
        #: The argument at fault: an API field (``layerDigest``) or a parameter's name.
        self.parameter = parameter


class ConfigurationError(ECRError):
    """The client could not be set up or used: no region, an unknown profile, a bad endpoint
    or download URL (unparseable, a bad port, an unsupported scheme)."""

    default_code = "ConfigurationError"


class AccessDenied(ECRError):
    """The credentials are valid but not allowed to do this."""

    default_code = "AccessDeniedException"


class CredentialsError(ECRError):
    """No credentials were found, or the service refused them (unknown, expired, bad signature)."""

    default_code = "CredentialsError"


class RepositoryNotFound(ECRError):
    """No such repository in this registry."""

    default_code = "RepositoryNotFoundException"


class InvalidResponse(ECRError):
    """The service answered 200 with something that is not a usable download URL."""

    default_code = "InvalidResponse"


class UnknownError(ECRError):
    """The service answered with an error code that ecr-layers does not know yet."""

    default_code = "UnknownError"


class ImageError(ECRError):
    """A failure about one image: ``repository_name`` and ``reference`` are always set."""

    default_code = "ImageError"
    image: ImageRef

    def __init__(
        self, message: str = "", *, image: ImageRef | None, **context: Unpack[_ImageOwn]
    ) -> None:
        if image is None:
            raise TypeError(f"{type(self).__name__} needs the image it is about")
        super().__init__(message, image=image, **context)

    @property
    def repository_name(self) -> str:
        """The repository the call was about."""
        return self.image.repository_name

    @property
    def reference(self) -> str:
        """The tag or digest the call asked for."""
        return self.image.reference


class ImageNotFound(ImageError):
    """No image with this tag or digest in the repository."""

    default_code = "ImageNotFound"


class ImageTagDoesNotMatchDigest(ImageNotFound):
    """The tag and the digest asked for together name different images."""

    default_code = "ImageTagDoesNotMatchDigest"


class PlatformNotFound(ImageError):
    """The image's index offers no manifest for the platform asked for.

    ``platforms`` lists the ones it offers (attestations left out).
    """

    default_code = "PlatformNotFound"

    def __init__(
        self, message: str = "", *, platforms: tuple[str, ...] = (), **context: Unpack[ImageContext]
    ) -> None:
        super().__init__(message, **context)
        self.platforms = platforms


class UnsupportedMediaType(ImageError):
    """The manifest is Docker schema 1, or of a media type ecr-layers cannot read."""

    default_code = "UnsupportedMediaType"

    def __init__(
        self, message: str = "", *, media_type: str | None = None, **context: Unpack[ImageContext]
    ) -> None:
        super().__init__(message, **context)
        self.media_type = media_type


class FileNotInImage(ImageError, FileNotFoundError):
    """`read_file`: the path is not a file in the image (missing, whited out, or not a file)."""

    default_code = "FileNotInImage"

    def __init__(
        self, message: str = "", *, path: str = "", **context: Unpack[ImageContext]
    ) -> None:
        super().__init__(message, **context)
        #: The path asked for, as given.
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), dict(self.__dict__)))


class UnableToGetUpstreamImage(ImageError):
    """A pull-through cache could not fetch the image from its upstream registry."""

    default_code = "UnableToGetUpstreamImageException"


class ImageReferencedByManifestList(ImageError):
    """The image is referenced by a manifest list, and the operation refused it for that."""

    default_code = "ImageReferencedByManifestList"


class ImageInaccessible(ImageError):
    """The image exists but cannot be read (archived, or being restored)."""

    default_code = "ImageInaccessible"


class KmsError(ImageError):
    """The KMS key that encrypts the repository refused or failed."""

    default_code = "KmsError"


class UpstreamAccessDenied(ImageError):
    """A pull-through cache's upstream registry refused its credentials."""

    default_code = "UpstreamAccessDenied"


class LayerError(ECRError):
    """A failure about one layer: ``repository_name`` and ``layer_digest`` are always set."""

    default_code = "LayerError"
    layer: LayerRef

    def __init__(
        self, message: str = "", *, layer: LayerRef | None, **context: Unpack[_LayerOwn]
    ) -> None:
        if layer is None:
            # A programming error in ecr-layers, not a condition to report as this class.
            raise TypeError(f"{type(self).__name__} needs the layer it is about")
        super().__init__(message, layer=layer, **context)

    @property
    def repository_name(self) -> str:
        """The repository the call was about."""
        return self.layer.repository_name

    @property
    def layer_digest(self) -> str:
        """The layer digest the call was about."""
        return self.layer.layer_digest


class LayerInaccessible(LayerError):
    """The layer exists but no image references it; it may be garbage-collected."""

    default_code = "LayerInaccessibleException"


class LayersNotFound(LayerError):
    """The digest is unknown, or not a layer of this repository (or its bytes are gone)."""

    default_code = "LayersNotFoundException"


class UnableToGetUpstreamLayer(LayerError):
    """A pull-through cache could not fetch the layer from its upstream registry."""

    default_code = "UnableToGetUpstreamLayerException"


class UnsafeLayer(LayerError):
    """A layer entry that cannot be applied inside the root (a ``..`` name, a link or
    whiteout out of it, a reserved whiteout name); nothing was written outside."""

    default_code = "UnsafeLayer"

    def __init__(
        self, message: str = "", *, entry: str = "", **context: Unpack[LayerContext]
    ) -> None:
        super().__init__(message, **context)
        #: The entry's name as the layer's tar gives it.
        self.entry = entry


class DownloadError(LayerError):
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
        **context: Unpack[LayerContext],
    ) -> None:
        super().__init__(message, **context)
        self.expected = expected
        self.actual = actual


class UnsupportedDigest(DownloadError, ValueError):
    """The digest is not an OCI ``sha256``/``sha512`` digest, so the bytes cannot be verified."""

    default_code = "UnsupportedDigest"


class BlobTooLarge(DownloadError):
    """A manifest or config is larger than its documented cap, or an export's unpacked
    bytes or entries are over theirs; nothing was read past it."""

    default_code = "BlobTooLarge"

    def __init__(
        self,
        message: str = "",
        *,
        size: int | None = None,
        limit: int = 0,
        **context: Unpack[LayerContext],
    ) -> None:
        super().__init__(message, **context)
        #: The size announced or read so far (None if the host did not say).
        self.size = size
        self.limit = limit


class DestinationError(DownloadError, OSError):
    """The destination cannot be written: missing or read-only directory, a bad or too long
    name, a full disk.  ``errno`` is the operating system's, where it gave one."""

    default_code = "DestinationError"

    def __init__(
        self,
        message: str = "",
        *,
        errno: int | None = None,
        path: str | None = None,
        **context: Unpack[LayerContext],
    ) -> None:
        super().__init__(message, **context)
        self.errno = errno
        #: The path at fault, as the caller gave it or as it was derived.
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), {**self.__dict__, "errno": self.errno}))


class TransientError(ECRError):
    """A failure that may go away on its own; the retry policy retries these."""

    default_code = "TransientError"
    retryable = True


class ServerError(TransientError):
    """The service or the download host failed (``ServerException``, or any 5xx answer)."""

    default_code = "ServerException"


class Throttled(TransientError):
    """The service or the download host asked the client to slow down."""

    default_code = "ThrottlingException"


class LimitExceeded(Throttled):
    """The call would exceed a service quota of the account (``LimitExceededException``)."""

    default_code = "LimitExceededException"


class UpstreamTooManyRequests(Throttled, ImageError):
    """A pull-through cache's upstream registry is throttling it."""

    default_code = "UpstreamTooManyRequests"


class UpstreamUnavailable(TransientError, ImageError):
    """A pull-through cache's upstream registry is unavailable."""

    default_code = "UpstreamUnavailable"


class EndpointUnreachable(TransientError):
    """The endpoint could not be reached, or closed the connection (or sent less than promised)."""

    default_code = "EndpointUnreachable"


class EndpointTimeout(TransientError):
    """Connecting or reading timed out, or a transfer ran below the minimum rate."""

    default_code = "EndpointTimeout"


class DownloadUrlExpired(TransientError, LayerError):
    """The download URL expired mid-download; a fresh one is fetched and the download goes on."""

    default_code = "DownloadUrlExpired"


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
