"""
Push an image through ECR's own upload API, as ``docker push`` would.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ._oci import digest_of, push_with

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

_PART = 5 * 1024 * 1024


def push_image_via_api(
    client: ECRClient, repository_name: str, layers: list[bytes], tag: str | None = "latest"
) -> list[str]:
    """Create the repository if needed, upload *layers* and a manifest; return layer digests.

    Works against any ECR endpoint the client points at, LocalECR or real ECR.
    """
    with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
        client.create_repository(repositoryName=repository_name)

    def put(manifest: str) -> None:
        extra = {"imageTag": tag} if tag else {}
        client.put_image(repositoryName=repository_name, imageManifest=manifest, **extra)

    return push_with(lambda data: upload_layer_via_api(client, repository_name, data), put, layers)


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
