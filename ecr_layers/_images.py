"""
Images: a tag or digest to one verified `Image` through ``BatchGetImage``, an index
resolved to one platform's manifest, and the image's config read into memory.

Each ``BatchGetImage`` is one attempt of the client's one retry layer; its
per-image failures are mapped by `_mapping`, so the transient ones are retried like
any other.  Bytes are checked before they are parsed: their size against the cap,
then their digest, against the one the service reports and the one asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import attrs

from ._botocore import mapped_errors
from ._exceptions import (
    BlobTooLarge,
    DigestMismatch,
    ECRError,
    ImageRef,
    InvalidParameter,
    InvalidResponse,
    LayerRef,
    UnsupportedMediaType,
)
from ._manifest import (
    ACCEPTED_MEDIA_TYPES,
    IMAGE_MANIFESTS,
    INDEXES,
    MAX_MANIFEST_BYTES,
    Image,
    Platform,
    choose,
    load,
    manifest_parts,
    parse_json,
)
from ._transfer import check_digest

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

    from ._validation import Validator


@attrs.frozen
class _Served:
    """One image as ``BatchGetImage`` returned it."""

    data: bytes
    media_type: str | None
    digest: str


@attrs.frozen
class Request:
    """One ``BatchGetImage`` the resolution needs: its parameters and the image it is for."""

    params: dict[str, Any]
    image: ImageRef


#: `resolve`'s protocol: it yields each `Request`, is sent each answer as `_Served`,
#: and returns the `Image`.  Transports (sync, asyncio) only carry the requests.
Steps = Generator[Request, _Served, Image]


def resolve(
    validator: Validator,
    repository_name: object,
    reference: object,
    *,
    registry_id: object,
    platform: object,
) -> Steps:
    """Every rule of `LayerClient.get_image`, with the requests left to the caller.

    Inputs are checked before the first request is yielded.
    """
    params, ref, by_digest = validator.image_params(repository_name, reference, registry_id)
    if by_digest:
        check_reference_digest(ref)
    wanted = Platform.this_machine() if platform is None else Platform.parse(platform)
    return _resolve(Request(params, ref), by_digest, wanted)


def _resolve(request: Request, by_digest: bool, wanted: Platform) -> Steps:
    ref = request.image
    served = yield request
    if by_digest and served.digest.lower() != ref.reference.lower():
        raise _mismatch(ref, ref.reference, served.digest, "the service answered for")
    _verify(served.data, served.digest, ref)
    kind, document = load(served.data, served.media_type, ref)
    if kind not in INDEXES:
        return _image(ref, served, kind, document)
    entry, chosen, offered = choose(document, wanted, ref)
    manifest = yield Request({**request.params, "imageIds": [{"imageDigest": entry.digest}]}, ref)
    if len(manifest.data) != entry.size:
        raise DigestMismatch(
            f"the index's entry for {chosen} says {entry.size} bytes; the manifest served for "
            f"it is {len(manifest.data)}",
            expected=entry.digest,
            actual=manifest.digest,
            layer=_blob(ref, entry.digest),
            image=ref,
        )
    _verify(manifest.data, entry.digest, ref)
    kind, document = load(manifest.data, manifest.media_type or entry.media_type, ref)
    if kind not in IMAGE_MANIFESTS:
        raise UnsupportedMediaType(
            f"the index's entry for {chosen} is itself an index ({kind})",
            media_type=kind,
            image=ref,
        )
    return attrs.evolve(
        _image(ref, attrs.evolve(manifest, digest=entry.digest), kind, document),
        platform=chosen,
        index_digest=served.digest,
        platforms=offered,
    )


def get_image(
    ecr: ECRClient,
    validator: Validator,
    retrying: Callable[[Callable[[], _Served]], _Served],
    repository_name: object,
    reference: object,
    *,
    deadline: float | None,
    registry_id: object,
    platform: object,
) -> Image:
    """Return the verified image manifest *reference* names; see `LayerClient.get_image`.

    Every ``BatchGetImage`` of it ends by *deadline*."""
    steps = resolve(
        validator, repository_name, reference, registry_id=registry_id, platform=platform
    )
    try:
        request = next(steps)
        while True:
            request = steps.send(retrying(lambda r=request: _batch_get(ecr, r, deadline)))  # type: ignore[misc]
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def check_reference_digest(ref: ImageRef) -> None:
    """Refuse a digest reference that could not be verified, before any request."""
    try:
        check_digest(ref.reference, _blob(ref, ref.reference))
    except ECRError:
        raise InvalidParameter(
            f"imageDigest {ref.reference[:80]!r} is not a sha256 (64) or sha512 (128) "
            "lowercase hex digest, so the manifest could not be verified",
            parameter="imageDigest",
        ) from None


def _image(ref: ImageRef, served: _Served, kind: str, document: dict[str, Any]) -> Image:
    config, layers = manifest_parts(document, ref)
    return Image(
        repository_name=ref.repository_name,
        registry_id=ref.registry_id,
        reference=ref.reference,
        digest=served.digest,
        media_type=kind,
        manifest_bytes=served.data,
        config=config,
        layers=layers,
    )


def _batch_get(ecr: ECRClient, request: Request, deadline: float | None) -> _Served:
    """One ``BatchGetImage`` attempt for one image; a typed error for every failure."""
    with mapped_errors(image=request.image, deadline=deadline):
        response = ecr.batch_get_image(
            **request.params, acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES)
        )
    return answer(response, request)


def answer(response: Any, request: Request) -> _Served:
    """The image a ``BatchGetImage`` answer holds, or the typed error for its failure."""
    ref = request.image
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
    failures: Any = response.get("failures") or []
    images: Any = response.get("images") or []
    if not _list_of_dicts(failures) or not _list_of_dicts(images):
        raise InvalidResponse(
            "BatchGetImage answered with images or failures that are not objects",
            request_id=request_id,
            image=ref,
        )
    if failures and not images:
        from . import _mapping

        raise _mapping.from_image_failure(failures[0], ref, request_id)
    if len(images) != 1:
        raise InvalidResponse(
            f"BatchGetImage answered with {len(images)} images for one asked for",
            request_id=request_id,
            image=ref,
        )
    image: Any = images[0]
    image_id = image.get("imageId")
    text = image.get("imageManifest")
    digest = image_id.get("imageDigest") if isinstance(image_id, dict) else None
    if not isinstance(text, str) or not isinstance(digest, str):
        raise InvalidResponse(
            "BatchGetImage answered without a manifest or its digest",
            request_id=request_id,
            image=ref,
        )
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidResponse("the image manifest is not UTF-8", image=ref) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise BlobTooLarge(
            f"the image manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} cap",
            size=len(data),
            limit=MAX_MANIFEST_BYTES,
            layer=_blob(ref, digest),
            image=ref,
        )
    media_type = image.get("imageManifestMediaType")
    return _Served(data, media_type if isinstance(media_type, str) else None, digest)


def _list_of_dicts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _verify(data: bytes, digest: str, ref: ImageRef) -> None:
    try:
        algorithm = check_digest(digest, _blob(ref, digest))
    except ECRError:
        raise InvalidResponse(
            f"the service named the manifest by an unverifiable digest {digest[:80]!r}", image=ref
        ) from None
    actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if actual != digest.lower():
        raise _mismatch(ref, digest, actual, "the manifest's bytes hash to")


def _mismatch(ref: ImageRef, expected: str, actual: str, what: str) -> DigestMismatch:
    return DigestMismatch(
        f"{what} {actual[:80]}, not {expected[:80]}",
        expected=expected,
        actual=actual,
        layer=_blob(ref, expected),
        image=ref,
    )


def _blob(ref: ImageRef, digest: str) -> LayerRef:
    return LayerRef(ref.repository_name, digest, ref.registry_id)


def check_max_bytes(max_bytes: object) -> int:
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise InvalidParameter(
            f"max_bytes must be a positive int, got {max_bytes!r}", parameter="max_bytes"
        )
    return max_bytes


def parse_config(data: bytes, image: Image, limit: int) -> dict[str, Any]:
    """Return a config blob's JSON object (its bytes already verified, and read no
    further than `config_blob` allowed): as large as its descriptor says, and within
    *limit* bytes and `MAX_JSON_DEPTH`."""
    what = f"the image's config {image.config.digest[:80]}"
    blob = _blob(image.ref, image.config.digest)
    if len(data) != image.config.size:
        # The bytes are the digest's: the manifest's size is wrong, as for a layer.
        raise InvalidResponse(
            f"the manifest says {what} is {image.config.size} bytes; it is {len(data)}",
            image=image.ref,
            layer=blob,
        )
    config = parse_json(data, what, image.ref, max_bytes=limit, blob=blob)
    if not isinstance(config, dict):
        raise InvalidResponse(f"{what} is not a JSON object", image=image.ref, layer=blob)
    return config


def config_request(
    image: object,
    reference: object,
    registry_id: object,
    platform: object,
    max_bytes: object,
) -> tuple[int, Image | None]:
    """Check ``get_config``'s arguments: return the cap, and the `Image` if one was given
    (else the repository and reference name the image to get first)."""
    limit = check_max_bytes(max_bytes)
    if isinstance(image, Image):
        if reference is not None or registry_id is not None or platform is not None:
            raise InvalidParameter(
                "give an Image alone, or a repository name and a reference",
                parameter="reference",
            )
        return limit, image
    if reference is None:
        raise InvalidParameter(
            "a reference (tag or digest) is needed with a repository name",
            parameter="reference",
        )
    return limit, None


def config_blob(image: Image, limit: int) -> tuple[LayerRef, int]:
    """The config blob to read, and the most bytes to read of it: its size in the
    manifest, as for a layer (the host may not send more: `BlobTooLarge`; less is
    refused by `parse_config`).  `BlobTooLarge` at once when that is over *limit*."""
    blob = image.config
    layer = LayerRef(image.repository_name, blob.digest, image.registry_id)
    if blob.size > limit:
        raise BlobTooLarge(
            f"the image's config is {blob.size} bytes, over max_bytes={limit}",
            size=blob.size,
            limit=limit,
            layer=layer,
            image=image.ref,
        )
    return layer, blob.size


def blob_request(
    validator: Validator, repository_name: object, blob: object, registry_id: object
) -> tuple[LayerRef, int | None]:
    """Check ``open_layer``'s arguments: the blob, and the size bound a `Descriptor` gives."""
    from ._manifest import Descriptor

    limit, digest = None, blob
    if isinstance(blob, Descriptor):
        # The manifest's size bounds what the host may send under this digest.
        limit, digest = blob.size, blob.digest
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidParameter(
                f"the Descriptor's size must be an int >= 0, got {limit!r:.60}",
                parameter="layer_digest",
            )
    params = validator.params(repository_name, digest, registry_id)
    layer = LayerRef(params["repositoryName"], params["layerDigest"], params.get("registryId"))
    return layer, limit
