"""
Images stored straight into LocalECR's registry: from raw bytes or chosen layers,
for several platforms behind an index (with an attestation, as buildx pushes them),
and the demo's.

Everything goes through the registry's own ``PutImage``, so a seeded image is one
the API would have accepted, and seeding works before the endpoint serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import attrs

from ecr_layers._manifest import OCI_MANIFEST

from ._images import TAG, is_tag
from ._layers import Layer, digest_of, random_layer, tar_layer
from ._oci import (
    FLAVOURS,
    IN_TOTO,
    OCI_CONFIG,
    Descriptor,
    Kind,
    Platform,
    Pushed,
    PutManifest,
    Upload,
    image_config,
    image_index,
    image_manifest,
    push_image_with,
)
from ._store import Registry

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64/v8")
DEMO_REPOSITORY = "demo/app"
DEMO_TAG = "v1"
#: The demo's layers for each platform: a shared base, then two of the platform's own.
DEMO_LAYER_SIZES = (64 * 1024, 1024 * 1024, 8 * 1024 * 1024)

# Shared by every platform's default image, as a distribution's base layer is.
_BASE_FILES = {
    "etc/os-release": b'NAME="LocalECR"\nID=localecr\nVERSION_ID="1"\n',
    "etc/motd": b"An image seeded by ecr-layers' LocalECR.\n",
}
_UNKNOWN = Platform("unknown", "unknown")
_PROVENANCE = "https://slsa.dev/provenance/v0.2"


@attrs.frozen
class SeededManifest:
    """One image manifest LocalECR stored, and the layers it names."""

    digest: str
    media_type: str
    #: The config blob's digest (downloadable with ``GetDownloadUrlForLayer``, as clients do).
    config_digest: str
    layers: tuple[Layer, ...]


def _read_only(manifests: Mapping[str, SeededManifest]) -> Mapping[str, SeededManifest]:
    return MappingProxyType(dict(manifests))


@attrs.frozen
class SeededImage:
    """A multi-platform image LocalECR stored: its index, and each platform's manifest."""

    repository_name: str
    tag: str
    #: The index's (or manifest list's) digest: what `tag` points to.
    digest: str
    media_type: str
    #: Each platform's manifest, keyed by the platform as given (``"linux/arm64/v8"``).
    manifests: Mapping[str, SeededManifest] = attrs.field(converter=_read_only, hash=False)
    #: The attestation manifest's digest, if the index names one.
    attestation_digest: str | None


def push_image(
    registry: Registry, repository_name: str, layers: Sequence[bytes | Layer], tag: str | None
) -> list[str]:
    """Store a linux/amd64 OCI image of *layers*; return the layers' digests."""
    _check_tag(tag)
    upload, put = _upload(registry, repository_name), _put(registry, repository_name, tag)
    return list(push_image_with(upload, put, layers).layer_digests)


def push_layers_image(
    registry: Registry,
    repository_name: str,
    tag: str | None,
    layers: Sequence[Layer],
    *,
    platform: str,
    kind: Kind,
) -> SeededManifest:
    """Store one image manifest of *layers* for *platform*, tagged *tag* if not None."""
    _check_tag(tag)
    _check_layers(layers)
    parsed = Platform.parse(platform)
    pushed = _push_layers(registry, repository_name, tag, layers, platform=parsed, kind=kind)
    return _seeded(pushed, layers)


def push_platform_image(
    registry: Registry,
    repository_name: str,
    tag: str,
    *,
    platforms: Sequence[str],
    layers: Mapping[str, Sequence[Layer]] | None,
    kind: Kind,
    attestation: bool,
) -> SeededImage:
    """Store a manifest per platform, untagged, then an index naming them, tagged *tag*."""
    parsed = {platform: Platform.parse(platform) for platform in platforms}
    if not parsed or len(parsed) != len(platforms):
        raise ValueError(f"platforms must be at least one, each once; got {list(platforms)}")
    chosen = dict(layers or {})
    strays = sorted(set(chosen) - set(parsed))
    if strays:
        raise ValueError(f"layers given for platforms not pushed: {strays}")
    _check_tag(tag)
    for own in chosen.values():
        _check_layers(own)
    # Everything checked: from here on, nothing is refused half-way through.
    base = tar_layer(_BASE_FILES)
    images = {
        platform: chosen[platform] if platform in chosen else _default_layers(base, platform)
        for platform in platforms
    }
    pushed = {
        platform: _push_layers(
            registry, repository_name, None, own, platform=parsed[platform], kind=kind
        )
        for platform, own in images.items()
    }
    entries = [
        Descriptor(image.media_type, image.manifest_digest, image.manifest_size, parsed[platform])
        for platform, image in pushed.items()
    ]
    attestation_digest = None
    if attestation and kind == "oci":
        # buildx attests every platform; one attestation is enough to test on.
        first = platforms[0]
        subject = pushed[first].manifest_digest
        entry = _push_attestation(registry, repository_name, tag, first, subject)
        entries.append(entry)
        attestation_digest = entry.digest
    index = image_index(kind, entries)
    _put(registry, repository_name, tag)(index.decode(), FLAVOURS[kind].index)
    return SeededImage(
        repository_name,
        tag,
        digest_of(index),
        FLAVOURS[kind].index,
        {platform: _seeded(pushed[platform], images[platform]) for platform in platforms},
        attestation_digest,
    )


def push_demo_image(registry: Registry) -> SeededImage:
    """Store the demo's multi-platform image, ``demo/app:v1``, of random-byte layers."""
    base_size, *own_sizes = DEMO_LAYER_SIZES
    base = random_layer(base_size, name="base.bin")
    layers = {
        platform: (base, *(random_layer(size, name=f"layer-{size}.bin") for size in own_sizes))
        for platform in DEFAULT_PLATFORMS
    }
    return push_platform_image(
        registry,
        DEMO_REPOSITORY,
        DEMO_TAG,
        platforms=DEFAULT_PLATFORMS,
        layers=layers,
        kind="oci",
        attestation=True,
    )


def _push_layers(
    registry: Registry,
    repository_name: str,
    tag: str | None,
    layers: Sequence[Layer],
    *,
    platform: Platform,
    kind: Kind,
) -> Pushed:
    upload, put = _upload(registry, repository_name), _put(registry, repository_name, tag)
    return push_image_with(upload, put, layers, platform=platform, kind=kind)


def _check_layers(layers: Sequence[Layer]) -> None:
    if not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError("layers must be Layer objects (from tar_layer or random_layer)")


def _check_tag(tag: str | None) -> None:
    # Checked before anything is stored, and as the ValueError a Python caller expects.
    if tag is not None and not is_tag(tag):
        raise ValueError(f"ECR tags match {TAG.pattern} (at most 300 characters), got {tag!r}")


def _seeded(pushed: Pushed, layers: Sequence[Layer]) -> SeededManifest:
    return SeededManifest(
        pushed.manifest_digest, pushed.media_type, pushed.config_digest, tuple(layers)
    )


def _push_attestation(
    registry: Registry, repository_name: str, tag: str, platform: str, subject: str
) -> Descriptor:
    """Store a provenance attestation of manifest *subject*; return its index entry,
    as buildx writes it.
    """
    name = f"pkg:docker/{repository_name}@{tag}?platform={quote(platform, safe='')}"
    statement = _provenance(name, subject)
    statement_digest = registry.add_layer(repository_name, statement)
    # An attestation's config is an image config whose one "layer" is the statement.
    config = image_config(_UNKNOWN, [statement_digest])
    config_digest = registry.add_layer(repository_name, config)
    manifest = image_manifest(
        "oci",
        Descriptor(OCI_CONFIG, config_digest, len(config)),
        [
            Descriptor(
                IN_TOTO,
                statement_digest,
                len(statement),
                annotations={"in-toto.io/predicate-type": _PROVENANCE},
            )
        ],
    )
    _put(registry, repository_name, None)(manifest.decode(), OCI_MANIFEST)
    return Descriptor.of(
        OCI_MANIFEST,
        manifest,
        platform=_UNKNOWN,
        annotations={
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )


def _provenance(subject_name: str, subject_digest: str) -> bytes:
    algorithm, _, hex_digest = subject_digest.partition(":")
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": _PROVENANCE,
        "subject": [{"name": subject_name, "digest": {algorithm: hex_digest}}],
        "predicate": {
            "builder": {"id": "ecr-layers LocalECR"},
            "buildType": "https://mobyproject.org/buildkit@v1",
        },
    }
    return json.dumps(statement, indent=2).encode()


def _default_layers(base: Layer, platform: str) -> tuple[Layer, Layer]:
    own = {
        "app/hello": f"#!/bin/sh\necho 'hello from {platform}'\n".encode(),
        "app/PLATFORM": f"{platform}\n".encode(),
    }
    return base, tar_layer(own)


def _upload(registry: Registry, repository_name: str) -> Upload:
    return lambda data: registry.add_layer(repository_name, data)


def _put(registry: Registry, repository_name: str, tag: str | None) -> PutManifest:
    def put(text: str, media_type: str) -> None:
        request: dict[str, Any] = {
            "repositoryName": repository_name,
            "imageManifest": text,
            "imageManifestMediaType": media_type,
        }
        registry.PutImage({**request, "imageTag": tag} if tag else request)

    return put
