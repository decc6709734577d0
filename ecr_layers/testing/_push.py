"""
Push an image through ECR's own upload API, as ``docker push`` would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._layers import Layer, digest_of
from ._oci import push_image_with

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

_PART = 5 * 1024 * 1024


def push_image_via_api(
    client: ECRClient,
    repository_name: str,
    layers: Sequence[bytes | Layer],
    tag: str | None = "latest",
) -> list[str]:
    """Create the repository if needed, upload *layers* and a manifest; return layer digests.

    Works against any ECR endpoint the client points at, LocalECR or real ECR.  The
    image is a linux/amd64 OCI image, as `LocalECR.push_image` stores.
    """
    with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
        client.create_repository(repositoryName=repository_name)

    def put(manifest: str, media_type: str) -> None:
        extra = {"imageTag": tag} if tag else {}
        client.put_image(
            repositoryName=repository_name,
            imageManifest=manifest,
            imageManifestMediaType=media_type,
            **extra,
        )

    def upload(data: bytes) -> str:
        return upload_layer_via_api(client, repository_name, data)

    return list(push_image_with(upload, put, layers).layer_digests)


def upload_layer_via_api(client: ECRClient, repository_name: str, data: bytes) -> str:
    """Upload one layer in parts and return its digest (an existing layer is fine)."""
    digest = digest_of(data)
    upload_id = client.initiate_layer_upload(repositoryName=repository_name)["uploadId"]
    for first in range(0, len(data), _PART):
        part = data[first : first + _PART]
        client.upload_layer_part(
            repositoryName=repository_name,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    with contextlib.suppress(client.exceptions.LayerAlreadyExistsException):
        client.complete_layer_upload(
            repositoryName=repository_name, uploadId=upload_id, layerDigests=[digest]
        )
    return digest
