"""
The one list of what LocalECR serves: ECR operation name -> the function that answers it.

The handler looks operations up here and nowhere else, the docs' list of served
operations is checked against it, and each name is checked against botocore's model.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from ._faults import FaultName
from ._store import Registry

if TYPE_CHECKING:
    from ._server import LocalECR

Request = dict[str, Any]


@attrs.frozen
class Reply:
    """An operation's JSON response, and the injected fault that shaped it, if any."""

    body: dict[str, Any]
    fault: FaultName | None = None


#: Takes the endpoint and the request as `._shapes.read_request` returns it.
Operation = Callable[["LocalECR", Request], Reply]


def _registry(method: Callable[[Registry, Request], dict[str, Any]]) -> Operation:
    """An operation the registry answers alone."""

    def operation(ecr: LocalECR, request: Request) -> Reply:
        return Reply(method(ecr.registry, request))

    return operation


def _get_download_url_for_layer(ecr: LocalECR, request: Request) -> Reply:
    response = ecr.registry.GetDownloadUrlForLayer(request)
    # Taken only once the layer is known to be served, so a refused call
    # leaves the fault for the next one.
    expired = ecr.faults.take_blob_fault("expired_url")
    url = ecr.download_url(request["repositoryName"], request["layerDigest"], expired=expired)
    return Reply({**response, "downloadUrl": url}, "expired_url" if expired else None)


def _batch_get_image(ecr: LocalECR, request: Request) -> Reply:
    response = ecr.registry.BatchGetImage(request)
    # Taken once the repository is known to exist, like expired_url: a refused
    # call leaves the fault for the next one.
    injected = ecr.faults.take_image_failure()
    if injected is None:
        return Reply(response)
    code, reason = injected
    failures = [
        {"imageId": image_id, "failureCode": code, "failureReason": reason}
        for image_id in request["imageIds"]
    ]
    return Reply({"images": [], "failures": failures}, "fail_image")


def _get_authorization_token(ecr: LocalECR, request: Request) -> Reply:
    # registryIds is deprecated and ignored, as ECR does: one token for the caller's registry.
    password, expires_at = ecr.tokens.issue()
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    data = {
        "authorizationToken": token,
        "expiresAt": expires_at.timestamp(),
        "proxyEndpoint": ecr.endpoint_url,
    }
    return Reply({"authorizationData": [data]})


OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        "BatchCheckLayerAvailability": _registry(Registry.BatchCheckLayerAvailability),
        "BatchGetImage": _batch_get_image,
        "CompleteLayerUpload": _registry(Registry.CompleteLayerUpload),
        "CreateRepository": _registry(Registry.CreateRepository),
        "DescribeRepositories": _registry(Registry.DescribeRepositories),
        "GetAuthorizationToken": _get_authorization_token,
        "GetDownloadUrlForLayer": _get_download_url_for_layer,
        "InitiateLayerUpload": _registry(Registry.InitiateLayerUpload),
        "PutImage": _registry(Registry.PutImage),
        "UploadLayerPart": _registry(Registry.UploadLayerPart),
    }
)
