"""
Image documents for seeding: media types, platforms, and the JSON of configs,
manifests and indexes, in both the OCI and the Docker flavour.

One recipe (`push_image_with`) uploads layers and a config and puts a manifest;
LocalECR's Python shortcuts and the ECR upload API (`._push`) both use it, so the
two seeding paths store the same images.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import attrs

# One spelling of the manifest media types: the client's.
from ecr_layers._manifest import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

from ._layers import Layer, diff_id_of, digest_of

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Docker's schema 1: stored as given, for clients' refusal tests.
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
IN_TOTO = "application/vnd.in-toto+json"

SCHEMA1 = frozenset({DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1})

#: Which family of media types an image is written in.
Kind = Literal["oci", "docker"]


@attrs.frozen
class Flavour:
    """The media types one `Kind` of image uses for each of its parts."""

    manifest: str
    index: str
    config: str
    layer: str


FLAVOURS: Mapping[Kind, Flavour] = MappingProxyType(
    {
        "oci": Flavour(OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
        "docker": Flavour(DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER),
    }
)

_PLATFORM = re.compile(r"([^/\s]+)/([^/\s]+)(?:/([^/\s]+))?")


@attrs.frozen
class Platform:
    """An image's platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Return the platform *text* names, as in ``linux/arm64/v8``; `ValueError` if none."""
        match = _PLATFORM.fullmatch(text)
        if match is None:
            raise ValueError(f"a platform is os/architecture[/variant], got {text!r}")
        return cls(match[1], match[2], match[3])

    def json(self) -> dict[str, str]:
        """The platform object of an index entry (and the config's fields of the same names)."""
        variant = {"variant": self.variant} if self.variant else {}
        return {"architecture": self.architecture, "os": self.os, **variant}

    def __str__(self) -> str:
        return "/".join(filter(None, (self.os, self.architecture, self.variant)))


@attrs.frozen
class Descriptor:
    """A reference from one document to a blob or manifest, as JSON writes it."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] | None = attrs.field(default=None, hash=False)

    @classmethod
    def of(cls, media_type: str, data: bytes, **extra: Any) -> Descriptor:
        """Return the descriptor of *data*."""
        return cls(media_type, digest_of(data), len(data), **extra)

    def json(self) -> dict[str, Any]:
        """The descriptor's JSON object."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.platform is not None:
            out["platform"] = self.platform.json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def encode(document: Mapping[str, Any]) -> bytes:
    """Return *document* as manifest bytes.

    Indented, as docker and buildx write them: a client that re-serializes what
    it was served, instead of hashing the bytes, gets another digest and notices.
    """
    return json.dumps(document, indent=3).encode()


def image_config(platform: Platform, diff_ids: Sequence[str]) -> bytes:
    """Return an image config for *platform* whose ``rootfs`` is layers *diff_ids*."""
    config = {
        **platform.json(),
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created_by": "LocalECR seeding"} for _ in diff_ids],
    }
    return json.dumps(config).encode()


def image_manifest(kind: Kind, config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    """Return an image manifest of *kind*."""
    return encode(
        {
            "schemaVersion": 2,
            "mediaType": FLAVOURS[kind].manifest,
            "config": config.json(),
            "layers": [layer.json() for layer in layers],
        }
    )


def image_index(kind: Kind, manifests: Sequence[Descriptor]) -> bytes:
    """Return an OCI index (``"oci"``) or a Docker manifest list (``"docker"``)."""
    return encode(
        {
            "schemaVersion": 2,
            "mediaType": FLAVOURS[kind].index,
            "manifests": [manifest.json() for manifest in manifests],
        }
    )


@attrs.frozen
class Pushed:
    """What `push_image_with` stored: the manifest, its config and its layers' digests."""

    manifest_digest: str
    media_type: str
    config_digest: str
    layer_digests: tuple[str, ...]
    manifest_size: int


#: Uploads a blob and returns its digest.
Upload = Callable[[bytes], str]
#: Puts a manifest: its text and its media type.
PutManifest = Callable[[str, str], object]


def push_image_with(
    upload: Upload,
    put_manifest: PutManifest,
    layers: Sequence[bytes | Layer],
    *,
    platform: Platform | None = None,
    kind: Kind = "oci",
) -> Pushed:
    """Upload *layers* and a config with *upload*, then put an image manifest for
    *platform* (default linux/amd64).

    A `Layer` is named in the config by its real diff_id; raw bytes by the digest
    of the tar inside when they are a gzip'd tar, else by their own digest (no tar
    to take one from).
    """
    flavour = FLAVOURS[kind]
    blobs = [layer.data if isinstance(layer, Layer) else layer for layer in layers]
    digests = tuple(upload(blob) for blob in blobs)
    diff_ids = [
        layer.diff_id if isinstance(layer, Layer) else diff_id_of(layer) for layer in layers
    ]
    config = image_config(platform or Platform("linux", "amd64"), diff_ids)
    config_digest = upload(config)
    manifest = image_manifest(
        kind,
        Descriptor(flavour.config, config_digest, len(config)),
        [
            Descriptor(flavour.layer, digest, len(blob))
            for digest, blob in zip(digests, blobs, strict=True)
        ],
    )
    put_manifest(manifest.decode(), flavour.manifest)
    return Pushed(digest_of(manifest), flavour.manifest, config_digest, digests, len(manifest))
