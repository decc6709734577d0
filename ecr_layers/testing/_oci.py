"""
OCI image pieces for seeding: digests, an image config and a manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    """Return the OCI sha256 digest of *data*."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_with(
    upload: Callable[[bytes], str], put_manifest: Callable[[str], object], layers: list[bytes]
) -> list[str]:
    """Upload *layers* and a config with *upload*, then an image manifest; return layer digests.

    The one image-building recipe behind both seeding paths: LocalECR's Python
    shortcut and the ECR upload API.
    """
    digests = [upload(data) for data in layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": digests}}
    ).encode()
    config_digest = upload(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": digest, "size": len(data)}
            for digest, data in zip(digests, layers, strict=True)
        ],
    }
    put_manifest(json.dumps(manifest))
    return digests
