"""
Image manifests and indexes: media types, the frozen `Image` and `Descriptor`, parsing
of what ``BatchGetImage`` serves, and choosing one platform's manifest from an index.

Pure functions over bytes: no requests, so the parsers are tested with hypothesis
on their own.  Every problem is a typed error about the image it came from.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from ._exceptions import (
    ImageRef,
    InvalidParameter,
    InvalidResponse,
    LayerRef,
    PlatformNotFound,
    UnsupportedMediaType,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: What ``get_image`` asks ``BatchGetImage`` for: every media type it can read.
ACCEPTED_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
#: The largest size a descriptor may state: the OCI spec's int64.
MAX_BLOB_SIZE = 2**63 - 1
#: The cap registries put on manifests and indexes (distribution's default is 4 MiB).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: How deep arrays and objects may nest in JSON from the service (manifests, indexes,
#: configs).  Real ones nest four or five levels; the bound keeps every parse, and any
#: code that walks what it returned, far from Python's recursion limit.
MAX_JSON_DEPTH = 64

# A JSON string, escapes and all, or an unclosed one to the end of the text: possessive
# and never failing once started, so that the scan is linear whatever the input.  Then
# what is left once they are gone that is not an array's or an object's bracket.
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}

#: The digests the API and the OCI spec accept; only sha256/sha512 are verified.
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_PLATFORM = re.compile(r"([a-z0-9_.-]+)/([a-z0-9_.-]+)(?:/([a-z0-9_.-]+))?")

# The OCI image spec's GOARCH names for what platform.machine() reports.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm",
    "armv7": "arm",
    "armv6l": "arm",
    "armhf": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# Variants implied when none is given, as containerd's platform matcher does.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


@attrs.frozen
class Descriptor:
    """A content descriptor: the media type, digest and size of a blob an image names."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict, converter=dict, eq=False)


@attrs.frozen
class Image:
    """One image manifest as ``BatchGetImage`` served it, verified against its digest.

    ``manifest_bytes`` are exactly the bytes served (they hash to ``digest``).  When
    the reference named an index or manifest list, ``index_digest`` is its digest,
    ``platform`` the entry chosen from it and ``platforms`` every one it offers;
    otherwise they are None and () (the platform is then in the image's config, see
    ``get_config``).  ``total_size`` adds up the config and the layers as listed.
    """

    repository_name: str
    registry_id: str | None
    reference: str
    digest: str
    media_type: str
    manifest_bytes: bytes = attrs.field(repr=False)
    config: Descriptor
    layers: tuple[Descriptor, ...]
    platform: str | None = None
    index_digest: str | None = None
    #: Every platform the index offers (attestations left out); () without an index.
    platforms: tuple[str, ...] = ()

    @property
    def total_size(self) -> int:
        """Bytes in the config and layers together."""
        return self.config.size + sum(layer.size for layer in self.layers)

    @property
    def ref(self) -> ImageRef:
        """The `ImageRef` this image's errors carry: repository, reference, registry."""
        return ImageRef(self.repository_name, self.reference, self.registry_id)


@attrs.frozen
class Platform:
    """An ``os/architecture[/variant]`` triple, normalised as the OCI image spec names them."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: object) -> Platform:
        """Parse ``"os/arch[/variant]"``; raise `InvalidParameter` if it is not one."""
        if not isinstance(text, str):
            raise InvalidParameter(
                f"platform must be a str like 'linux/amd64', got {type(text).__name__}",
                parameter="platform",
            )
        match = _PLATFORM.fullmatch(text.lower())
        if match is None:
            raise InvalidParameter(
                f"platform {text[:60]!r} is not os/arch[/variant], like 'linux/arm64/v8'",
                parameter="platform",
            )
        return cls.of(match[1], match[2], match[3])

    @classmethod
    def of(cls, os: str, architecture: str, variant: str | None) -> Platform:
        arch = _ARCH_ALIASES.get(architecture, architecture)
        if architecture == "armv6l" and not variant:
            variant = "v6"
        return cls(os, arch, variant or _DEFAULT_VARIANT.get(arch))

    @classmethod
    def this_machine(cls) -> Platform:
        """This machine's platform, as docker picks one: Linux unless on Windows."""
        import platform  # deferred: most processes never ask

        os = "windows" if sys.platform == "win32" else "linux"
        return cls.of(os, platform.machine().lower(), None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_digest(reference: str) -> bool:
    """Whether *reference* is a digest (``algorithm:encoded``) rather than a tag."""
    return _DIGEST.fullmatch(reference) is not None


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether *text*'s arrays and objects nest more than *limit* deep (``[]`` is 1).

    Exact for JSON, whose brackets inside strings do not count; for anything else an
    answer the parser that follows refuses anyway.  Scans at C speed (regular
    expressions, `itertools.accumulate`), without recursion, and stops at the first
    bracket past *limit*: 4 MiB of ``[`` is over at once.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).encode("ascii")
    depths = itertools.accumulate(map(_NESTING.__getitem__, brackets))
    return next(filter(limit.__lt__, depths), None) is not None


def parse_json(
    data: bytes, what: str, image: ImageRef, *, max_bytes: int, blob: LayerRef | None = None
) -> object:
    """Return the JSON value of *data*, parsed within bounds.

    Raises `InvalidResponse` naming the limit if *data* is over *max_bytes* or nests
    deeper than `MAX_JSON_DEPTH`, and if it is not JSON; never `RecursionError`.
    *what* names the document in messages (``"the image manifest"``); *blob*, if it
    is one of the image's blobs, is the errors' ``layer``.
    """

    def invalid(message: str) -> InvalidResponse:
        return InvalidResponse(f"{what} {message}", image=image, layer=blob)

    if len(data) > max_bytes:
        raise invalid(f"is {len(data)} bytes of JSON, over the limit of {max_bytes} bytes")
    try:
        # Decoded as json.loads decodes bytes (UTF-8, -16 or -32), so the depth counted
        # is that of the text parsed.
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError:
        raise invalid("is not JSON (nor text)") from None
    if nests_deeper_than(text, MAX_JSON_DEPTH):
        raise invalid(f"nests JSON deeper than the limit of {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError:
        raise invalid("is not JSON") from None


def load(data: bytes, media_type: str | None, image: ImageRef) -> tuple[str, dict[str, Any]]:
    """Return the media type and JSON object of a manifest or index's bytes.

    The media type is the one the service reported, else the document's own.
    Raises `UnsupportedMediaType` for anything but the four accepted types, and
    `InvalidResponse` for what `parse_json` refuses.
    """
    document = parse_json(data, "the image manifest", image, max_bytes=MAX_MANIFEST_BYTES)
    if not isinstance(document, dict):
        raise InvalidResponse("the image manifest is not a JSON object", image=image)
    kind = media_type or document.get("mediaType")
    if kind is None and document.get("schemaVersion") == 1:
        kind = "application/vnd.docker.distribution.manifest.v1+json"
    if kind not in ACCEPTED_MEDIA_TYPES:
        text = str(kind)[:100]
        raise UnsupportedMediaType(
            f"the image's manifest is of media type {text!r}; only OCI and Docker v2 "
            "manifests and indexes can be read (Docker schema 1 is not supported)",
            media_type=text,
            image=image,
        )
    return kind, document


def descriptor(raw: object, image: ImageRef, where: str) -> Descriptor:
    """Return a `Descriptor` from a manifest's JSON, or raise `InvalidResponse`."""
    if isinstance(raw, dict):
        media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
        annotations = raw.get("annotations") or {}
        if (
            isinstance(media_type, str)
            and isinstance(digest, str)
            and _DIGEST.fullmatch(digest)
            and type(size) is int
            and 0 <= size <= MAX_BLOB_SIZE
            and isinstance(annotations, dict)
            and all(isinstance(v, str) for v in annotations.values())
        ):
            return Descriptor(media_type, digest, size, annotations)
    raise InvalidResponse(f"the image manifest's {where} is not a valid descriptor", image=image)


def manifest_parts(
    document: dict[str, Any], image: ImageRef
) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """Return an image manifest's config and layers."""
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise InvalidResponse("the image manifest has no list of layers", image=image)
    return (
        descriptor(document.get("config"), image, "config"),
        tuple(descriptor(layer, image, f"layer {i}") for i, layer in enumerate(layers)),
    )


def choose(
    document: dict[str, Any], wanted: Platform, image: ImageRef
) -> tuple[Descriptor, str, tuple[str, ...]]:
    """Return the index entry for *wanted*, its platform's name, and every platform offered.

    Attestations (``unknown/unknown``, or a ``vnd.docker.reference.type``
    annotation) are never chosen nor offered.  Raises `PlatformNotFound` listing
    what the index offers.
    """
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise InvalidResponse("the image index has no list of manifests", image=image)
    offered: list[tuple[Platform, Descriptor]] = []
    for i, raw in enumerate(entries):
        entry = descriptor(raw, image, f"manifest {i}")
        found = _platform_of(raw, entry)
        if found is not None and entry.media_type in IMAGE_MANIFESTS:
            offered.append((found, entry))
    names = tuple(dict.fromkeys(str(found) for found, _ in offered))
    for found, entry in offered:
        if found == wanted:
            return entry, str(found), names
    raise PlatformNotFound(
        f"the image index offers no manifest for {wanted}; it offers "
        + (", ".join(names) if names else "none"),
        platforms=names,
        image=image,
    )


def _platform_of(raw: dict[str, Any], entry: Descriptor) -> Platform | None:
    if "vnd.docker.reference.type" in entry.annotations:
        return None
    spec = raw.get("platform")
    if not isinstance(spec, dict):
        return None
    os, arch, variant = spec.get("os"), spec.get("architecture"), spec.get("variant")
    if not isinstance(os, str) or not isinstance(arch, str) or os == "unknown":
        return None
    text = f"{os}/{arch}" + (f"/{variant}" if isinstance(variant, str) else "")
    # An entry whose platform is not plain os/arch[/variant] cannot be asked for, and its
    # names would reach messages and terminals: it is left out, like an attestation.
    match = _PLATFORM.fullmatch(text.lower()) if len(text) <= 100 else None
    return None if match is None else Platform.of(match[1], match[2], match[3])
