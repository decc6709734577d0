"""
What the registry reads in a manifest it is given, and how it finds the image asked for.

``PutImage``: the manifest's media type (the request's, else the document's) and
what it references: a config and layers for an image manifest, manifests for an
index or manifest list, nothing for Docker's schema 1 (stored as given).
``BatchGetImage``: an image identifier's tag and digest checked and resolved, or the
per-image failure the service answers instead.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Container, Mapping, Sequence
from typing import Any

import attrs

from ecr_layers._manifest import IMAGE_MANIFESTS, INDEXES

from ._errors import ServiceError, invalid_parameter
from ._oci import DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, SCHEMA1

#: An image digest, as the API reference writes ``imageDigest``'s pattern (the model
#: gives it none).
DIGEST = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
#: A tag, as ECR's own error message for a bad one states the rule (the model gives
#: only lengths, which `_TAG_MAX` reads).
TAG = re.compile(r"[a-zA-Z0-9-_.]+")

# The message ECR answers a manifest it cannot read with, malformed JSON or not.
_INVALID_MANIFEST = (
    "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
)


@attrs.frozen
class Manifest:
    """A manifest as ``PutImage`` stores it: the bytes, and what they reference."""

    data: bytes
    media_type: str
    #: Config and layer digests (image manifests).
    blobs: tuple[str, ...] = ()
    #: Manifest digests (indexes and manifest lists).
    manifests: tuple[str, ...] = ()


@attrs.frozen
class ImageFailure:
    """One of ``BatchGetImage``'s per-image failures."""

    code: str
    reason: str


def read_manifest(text: str, declared: str | None) -> Manifest:
    """Return the manifest *text* is, with media type *declared* or its own ``mediaType``.

    Raise `ServiceError` for what ``PutImage`` refuses: text that is not a JSON
    object, no media type or two that disagree, a media type ECR does not store,
    references that are not digests.
    """
    if len(text) > _manifest_max():
        raise invalid_parameter(
            f"1 validation error detected: Value at 'imageManifest' failed to satisfy "
            f"constraint: Member must have length less than or equal to {_manifest_max()}"
        )
    try:
        # The bytes stored and served are the text's UTF-8: what the client sent.
        data = text.encode()
        document = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeEncodeError (a lone surrogate) is one
        raise invalid_parameter(_INVALID_MANIFEST) from None
    if not isinstance(document, dict):
        raise invalid_parameter(_INVALID_MANIFEST)
    stated = document.get("mediaType")
    if stated is not None and not isinstance(stated, str):
        raise invalid_parameter(_INVALID_MANIFEST)
    if declared and stated and declared != stated:
        raise invalid_parameter(
            f"Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            f"the manifest's mediaType is '{stated}', not '{declared}'"
        )
    media_type = declared or stated or _schema1_type(document)
    if media_type is None:
        # What ECR answers an OCI manifest without mediaType when the request
        # does not name one either.
        raise invalid_parameter(_INVALID_MANIFEST)
    if media_type in IMAGE_MANIFESTS:
        config = _digests([document.get("config")])
        return Manifest(data, media_type, blobs=config + _digests(document.get("layers")))
    if media_type in INDEXES:
        return Manifest(data, media_type, manifests=_digests(document.get("manifests")))
    if media_type in SCHEMA1:
        return Manifest(data, media_type)
    raise invalid_parameter(
        f"Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
        f"'{media_type}' is not a manifest media type Amazon ECR stores"
    )


def check_tag(tag: str) -> None:
    """Raise ``PutImage``'s `ServiceError` unless *tag* is one ECR accepts."""
    if not is_tag(tag):
        raise invalid_parameter(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            f"'must satisfy regular expression '{TAG.pattern}''"
        )


def is_tag(tag: str) -> bool:
    """Return whether *tag* can name an image in ECR."""
    return TAG.fullmatch(tag) is not None and len(tag) <= _tag_max()


def check_references(manifest: Manifest, blobs: Container[str], manifests: Container[str]) -> None:
    """Raise ``PutImage``'s `ServiceError` if *manifest* names what the repository lacks."""
    missing = [digest for digest in manifest.blobs if digest not in blobs]
    if missing:
        raise ServiceError(
            "LayersNotFoundException",
            f"Layers {missing} referenced by the manifest are not in the repository.",
        )
    absent = [digest for digest in manifest.manifests if digest not in manifests]
    if absent:
        raise ServiceError(
            "ReferencedImagesNotFoundException",
            f"Images {absent} referenced by the manifest list are not in the repository.",
        )


def find_images(
    image_ids: Sequence[Mapping[str, Any]],
    tags: Mapping[str, str],
    manifests: Mapping[str, Manifest],
) -> tuple[list[tuple[dict[str, Any], Manifest]], list[dict[str, Any]]]:
    """Return ``BatchGetImage``'s answer for *image_ids*: (image id, manifest) for each
    image found, and a failure object for each one not.
    """
    found: list[tuple[dict[str, Any], Manifest]] = []
    failures: list[dict[str, Any]] = []
    for image_id in image_ids:
        digest = find_image(image_id, tags, manifests)
        if isinstance(digest, ImageFailure):
            failures.append(
                {"imageId": image_id, "failureCode": digest.code, "failureReason": digest.reason}
            )
            continue
        tag = {"imageTag": image_id["imageTag"]} if "imageTag" in image_id else {}
        found.append(({"imageDigest": digest, **tag}, manifests[digest]))
    return found, failures


def find_image(
    image_id: Mapping[str, Any], tags: Mapping[str, str], manifests: Container[str]
) -> str | ImageFailure:
    """Return the digest of the stored manifest *image_id* names, or why there is none.

    Checked in the order that reports the request's own mistakes first: nothing to
    look up, a malformed digest or tag; then whether the image exists, and whether a
    tag and digest given together agree.
    """
    tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
    if tag is None and digest is None:
        return ImageFailure("MissingDigestAndTag", "Invalid request: neither digest nor tag given")
    if digest is not None and DIGEST.fullmatch(digest) is None:
        return ImageFailure("InvalidImageDigest", f"Invalid image digest '{digest}'")
    if tag is not None and not is_tag(tag):
        return ImageFailure("InvalidImageTag", f"Invalid image tag '{tag}'")
    found = tags.get(tag) if tag is not None else digest
    if found is None or found not in manifests:
        return ImageFailure("ImageNotFound", "Requested image not found")
    if digest is not None and found != digest:
        return ImageFailure(
            "ImageTagDoesNotMatchDigest",
            f"The image tag '{tag}' points to {found}, not to the requested digest '{digest}'",
        )
    return found


def _digests(descriptors: object) -> tuple[str, ...]:
    # A manifest's references must be descriptors with a digest ECR could hold.
    if not isinstance(descriptors, list):
        raise invalid_parameter(_INVALID_MANIFEST)
    digests = []
    for descriptor in descriptors:
        digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
        if not isinstance(digest, str) or DIGEST.fullmatch(digest) is None:
            raise invalid_parameter(_INVALID_MANIFEST)
        digests.append(digest)
    return tuple(digests)


def _schema1_type(document: dict[str, Any]) -> str | None:
    # Schema 1 predates mediaType: its schemaVersion and signatures say what it is.
    if document.get("schemaVersion") != 1:
        return None
    return DOCKER_SCHEMA1_SIGNED if "signatures" in document else DOCKER_SCHEMA1


@functools.cache
def _manifest_max() -> int:
    return _input_max("PutImage", "imageManifest")


@functools.cache
def _tag_max() -> int:
    return _input_max("PutImage", "imageTag")


def _input_max(operation: str, member: str) -> int:
    from ._shapes import service_model

    shape = service_model().operation_model(operation).input_shape
    assert shape is not None
    limit: int = shape.members[member].metadata["max"]
    return limit
