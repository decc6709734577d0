"""
GetDownloadUrlForLayer's rules that do not depend on the transport: a batch's inputs,
an answer's checks, the context its errors carry, and how a batch keeps its errors.

Shared by `LayerClient` and `ecr_layers.aio.AsyncLayerClient`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._exceptions import ECRError, InvalidParameter, InvalidResponse, LayerRef
from ._url import LayerUrl, expiry_from_url

if TYPE_CHECKING:
    from ._validation import Validator


def batch(
    validator: Validator, repository_name: object, layer_digests: object, registry_id: object
) -> tuple[list[str], list[dict[str, Any]]]:
    """The distinct digests of a batch, in input order, and their request parameters.

    Every digest is validated before any request (`InvalidParameter` for the first
    bad one).
    """
    if isinstance(layer_digests, str | bytes) or not isinstance(layer_digests, Iterable):
        # A str is an iterable of one-character "digests": never what was meant.
        raise InvalidParameter(
            f"layer_digests must be an iterable of digests, not a single "
            f"{type(layer_digests).__name__}",
            parameter="layerDigests",
        )
    # Each checked before it is hashed: a list in the list is bad input, not a TypeError.
    checked = [(d, validator.params(repository_name, d, registry_id)) for d in layer_digests]
    distinct = dict(reversed(checked))  # the first of each digest's, in input order below
    digests = list(dict.fromkeys(d for d, _ in checked))
    return digests, [distinct[d] for d in digests]


def check_workers(max_workers: object) -> int:
    """Return *max_workers* if it is a count of concurrent lookups, 1 or more."""
    if isinstance(max_workers, int) and not isinstance(max_workers, bool) and max_workers >= 1:
        return max_workers
    raise InvalidParameter(
        f"max_workers must be an int >= 1, got {max_workers!r:.60}", parameter="max_workers"
    )


def kept(exc: ECRError) -> ECRError:
    """*exc*, to be kept in a batch's slot rather than raised: without tracebacks, which
    would keep every frame of the failed call (and its cause's) alive as long as it."""
    link: BaseException | None = exc
    while link is not None:
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def params_of(layer: LayerRef) -> dict[str, Any]:
    """The request parameters for *layer* (already validated)."""
    params = {"repositoryName": layer.repository_name, "layerDigest": layer.layer_digest}
    if layer.registry_id is not None:
        params["registryId"] = layer.registry_id
    return params


def context(params: dict[str, Any]) -> LayerRef:
    """The layer a request with *params* is about: what its errors carry."""
    return LayerRef(params["repositoryName"], params["layerDigest"], params.get("registryId"))


def layer_url(response: Any, params: dict[str, Any]) -> LayerUrl:
    """The `LayerUrl` in a GetDownloadUrlForLayer answer, or `InvalidResponse`."""
    url = response.get("downloadUrl")
    asked: str = params["layerDigest"]
    if not isinstance(url, str) or not url:
        raise _invalid("the response has no downloadUrl", response, params)
    digest = response.get("layerDigest", asked)
    if not isinstance(digest, str) or not _same_digest(digest, asked):
        raise _invalid(
            f"the response is for layer {digest!r}, not the one asked for", response, params
        )
    return LayerUrl(url, asked, expiry_from_url(url))


def _same_digest(answered: str, asked: str) -> bool:
    # The API's pattern allows upper-case hex; a service that answers in lower case
    # is naming the same layer.
    return answered == asked or answered.lower() == asked.lower()


def _invalid(why: str, response: Any, params: dict[str, Any]) -> InvalidResponse:
    meta = response.get("ResponseMetadata") or {}
    return InvalidResponse(
        f"GetDownloadUrlForLayer answered 200 but {why}",
        request_id=meta.get("RequestId"),
        http_status=meta.get("HTTPStatusCode"),
        layer=context(params),
    )
