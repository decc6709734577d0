"""
LocalECR's registry state and the semantics of each operation, without HTTP.

Every operation takes the request as `._shapes.read_request` returns it (members of
the modeled types, required ones present, blobs decoded) and returns the response's
JSON object, or raises `ServiceError` with the code and status the real service
documents.  `._operations` lists which of them LocalECR serves.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from typing import Any

import attrs

from ecr_layers._exceptions import InvalidParameter
from ecr_layers._validation import Validator, rules_from_model

from ._blobs import BlobStore
from ._errors import RegistryError, ServiceError
from ._images import Manifest, check_references, check_tag, find_images, read_manifest
from ._layers import digest_of
from ._oci import OCI_LAYER
from ._uploads import Session, Uploads

_PART_SIZE = 10 * 1024 * 1024


@attrs.define
class _Repository:
    name: str
    created_at: dt.datetime
    # Layers uploaded to this repository, referenced or not.
    layers: set[str] = attrs.Factory(set)
    # manifest digest -> the manifest, its bytes exactly as put
    manifests: dict[str, Manifest] = attrs.Factory(dict)
    tags: dict[str, str] = attrs.Factory(dict)
    # blobs that some image manifest references (configs and layers): downloadable
    referenced: set[str] = attrs.Factory(set)
    # CreateRepository's imageTagMutability: IMMUTABLE tags never move.
    tag_mutability: str = "MUTABLE"


@attrs.define
class PullThroughRule:
    """A pull-through cache rule: repositories under *prefix* come from an upstream."""

    prefix: str
    upstream_reachable: bool = False


class Registry:
    """One registry's repositories, layers and images; safe to share across threads."""

    def __init__(
        self,
        *,
        registry_id: str,
        region_name: str,
        host: Callable[[], str],
        storage_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.registry_id = registry_id
        self.region_name = region_name
        self._host = host
        self._lock = threading.RLock()
        self._repos: dict[str, _Repository] = {}
        self.blobs = BlobStore(storage_dir)
        # Beside the blobs, on their file system: a finished upload becomes a blob by rename.
        self.uploads = Uploads(self.blobs.directory / ".uploads")
        self.pull_through: list[PullThroughRule] = []
        self._validator: Validator | None = None

    # -- Python seeding ---------------------------------------------------------

    def create_repository(self, name: str, *, tag_mutability: str = "MUTABLE") -> None:
        with self._lock:
            if name not in self._repos:
                self._repos[name] = _Repository(
                    name, dt.datetime.now(dt.UTC), tag_mutability=tag_mutability
                )

    def add_layer(self, repository_name: str, data: bytes) -> str:
        digest = digest_of(data)
        with self._lock:
            self.create_repository(repository_name)
            self.blobs.put(digest, data)
            self._repos[repository_name].layers.add(digest)
        return digest

    # -- Operations ---------------------------------------------------------------

    def GetDownloadUrlForLayer(self, request: dict[str, Any]) -> dict[str, Any]:
        self._validate(request)
        name, digest = request["repositoryName"], request["layerDigest"]
        rule = self._pull_through_rule(name)
        if rule is not None and not rule.upstream_reachable:
            raise ServiceError(
                "UnableToGetUpstreamLayerException",
                f"There was an issue getting the upstream layer for '{name}' from "
                f"the pull through cache rule '{rule.prefix}'.",
            )
        with self._lock:
            repo = self._repo(request)
            if digest in repo.referenced:
                return {"layerDigest": digest}  # the server adds the URL
            if digest in repo.layers:
                raise ServiceError(
                    "LayerInaccessibleException",
                    f"The layer '{digest}' is not associated with an image in the repository "
                    f"'{name}'; unassociated layers may be cleaned up at any time.",
                )
        raise ServiceError(
            "LayersNotFoundException",
            f"The layer '{digest}' could not be found in the repository '{name}'.",
        )

    def CreateRepository(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("repositoryName")
        self._validate(request, "repositoryName")
        with self._lock:
            if name in self._repos:
                raise ServiceError(
                    "RepositoryAlreadyExistsException",
                    f"The repository with name '{name}' already exists in the registry "
                    f"with id '{self.registry_id}'",
                )
            mutability = request.get("imageTagMutability") or "MUTABLE"
            self.create_repository(name, tag_mutability=mutability)  # type: ignore[arg-type]
            return {"repository": self._describe(self._repos[name])}  # type: ignore[index]

    def DescribeRepositories(self, request: dict[str, Any]) -> dict[str, Any]:
        self._check_registry(request)
        with self._lock:
            names = request.get("repositoryNames") or sorted(self._repos)
            repos = []
            for name in names:
                if name not in self._repos:
                    raise _repository_not_found(name, self.registry_id)
                repos.append(self._describe(self._repos[name]))
        return {"repositories": repos}

    def InitiateLayerUpload(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            name = self._repo(request).name
        # The registry API's sessions: on disk, hashed as parts arrive.
        return {"uploadId": self.uploads.start(name).id, "partSize": _PART_SIZE}

    def UploadLayerPart(self, request: dict[str, Any]) -> dict[str, Any]:
        blob: bytes = request["layerPartBlob"]  # decoded from base64 by the request reader
        first, last = request.get("partFirstByte"), request.get("partLastByte")
        session = self._upload(request)
        try:
            if not isinstance(first, int) or last != first + len(blob) - 1:
                raise RegistryError("BLOB_UPLOAD_INVALID", "", 416)
            self.uploads.append(session, first, [blob])
        except RegistryError:
            raise ServiceError(
                "InvalidLayerPartException",
                f"The part [{first}, {last}] does not follow the {session.size} bytes "
                "received or does not match the part's size.",
            ) from None
        return {
            "registryId": self.registry_id,
            "repositoryName": request["repositoryName"],
            "uploadId": request["uploadId"],
            "lastByteReceived": session.size - 1,
        }

    def CompleteLayerUpload(self, request: dict[str, Any]) -> dict[str, Any]:
        session = self._upload(request)
        if not session.size:
            raise ServiceError("EmptyUploadException", "The upload contains no layer parts.")
        claimed = request.get("layerDigests") or []
        actual = session.digest()
        if claimed != [actual]:
            raise ServiceError(
                "InvalidLayerException",
                f"The layer digest calculation performed by Amazon ECR ({actual}) does not "
                f"match the layer digest specified ({', '.join(map(str, claimed))}).",
            )
        path = self.uploads.finish(session, actual)
        with self._lock:
            repo = self._repo(request)
            if actual in repo.layers:
                path.unlink(missing_ok=True)
                raise ServiceError(
                    "LayerAlreadyExistsException", f"The layer '{actual}' already exists."
                )
            self.blobs.adopt(actual, path)
            repo.layers.add(actual)
        return {
            "registryId": self.registry_id,
            "repositoryName": repo.name,
            "uploadId": request["uploadId"],
            "layerDigest": actual,
        }

    def PutImage(self, request: dict[str, Any]) -> dict[str, Any]:
        text = request.get("imageManifest")
        if not isinstance(text, str):
            raise ServiceError("InvalidParameterException", "imageManifest is required.")
        manifest = read_manifest(text, request.get("imageManifestMediaType"))
        tag = request.get("imageTag")
        if tag is not None:
            check_tag(tag)
        image_digest = digest_of(manifest.data)
        claimed = request.get("imageDigest")
        if claimed is not None and claimed != image_digest:
            raise ServiceError(
                "ImageDigestDoesNotMatchException",
                f"The image digest '{claimed}' does not match the digest Amazon ECR "
                f"calculated for the manifest ({image_digest}).",
            )
        with self._lock:
            repo = self._repo(request)
            check_references(manifest, repo.layers, repo.manifests)
            if tag and moves_immutable_tag(repo, tag, image_digest):
                raise ServiceError(
                    "ImageTagAlreadyExistsException",
                    f"The image tag '{tag}' already exists in the '{repo.name}' repository "
                    "and cannot be overwritten because the repository is immutable.",
                )
            self.store_manifest(repo, image_digest, manifest, tag)
        image_id = {"imageDigest": image_digest, **({"imageTag": tag} if tag else {})}
        return {
            "image": {
                "registryId": self.registry_id,
                "repositoryName": repo.name,
                "imageId": image_id,
                "imageManifest": text,
                "imageManifestMediaType": manifest.media_type,
            }
        }

    def BatchGetImage(self, request: dict[str, Any]) -> dict[str, Any]:
        # acceptedMediaTypes is not consulted: ECR converts between Docker v2 and
        # OCI image manifests pulled by tag, and otherwise serves what it stores,
        # with its media type, accepted or not.  LocalECR never converts (the
        # bytes served are the bytes put), so it always does the latter.
        with self._lock:
            repo = self._repo(request)
            found, failures = find_images(request["imageIds"], repo.tags, repo.manifests)
        images = [
            {
                "registryId": self.registry_id,
                "repositoryName": repo.name,
                "imageId": image_id,
                "imageManifest": manifest.data.decode(),
                "imageManifestMediaType": manifest.media_type,
            }
            for image_id, manifest in found
        ]
        return {"images": images, "failures": failures}

    def BatchCheckLayerAvailability(self, request: dict[str, Any]) -> dict[str, Any]:
        layers, failures = [], []
        with self._lock:
            repo = self._repo(request)
            for digest in request.get("layerDigests") or []:
                if digest in repo.layers:
                    layers.append(
                        {
                            "layerDigest": digest,
                            "layerAvailability": "AVAILABLE",
                            "layerSize": self.blobs.size(digest),
                            "mediaType": OCI_LAYER,
                        }
                    )
                else:
                    failures.append(
                        {
                            "layerDigest": digest,
                            "failureCode": "MissingLayerDigest",
                            "failureReason": "Could not find layer",
                        }
                    )
        return {"layers": layers, "failures": failures}

    # -- Helpers ------------------------------------------------------------------

    def store_manifest(
        self, repo: _Repository, digest: str, manifest: Manifest, tag: str | None
    ) -> None:
        """Keep *manifest* in *repo* (lock held), tagged *tag*; its blobs become downloadable."""
        repo.manifests[digest] = manifest
        repo.referenced.update(manifest.blobs)
        if tag:
            repo.tags[tag] = digest

    def lock(self) -> threading.RLock:
        """The lock every read and change of the repositories holds."""
        return self._lock

    def repository(self, name: str) -> _Repository | None:
        """Return repository *name* (hold `lock` while using it), or None."""
        return self._repos.get(name)

    def is_referenced(self, repository_name: str, digest: str) -> bool:
        with self._lock:
            repo = self._repos.get(repository_name)
            return repo is not None and digest in repo.referenced

    def _validate(self, request: dict[str, Any], *fields: str) -> None:
        # The server enforces the same model rules as the library, so a client that
        # skips local checks still meets the documented InvalidParameterException.
        if self._validator is None:
            from ._shapes import service_model

            self._validator = rules_from_model(service_model())
        for field in fields or ("repositoryName", "layerDigest", "registryId"):
            if field in request or field != "registryId":
                try:
                    self._validator.rules[field].check(request.get(field))
                except InvalidParameter as exc:
                    raise ServiceError("InvalidParameterException", exc.message) from None

    def _check_registry(self, request: dict[str, Any]) -> None:
        registry = request.get("registryId")
        if registry is not None and registry != self.registry_id:
            name = request.get("repositoryName", "")
            raise _repository_not_found(name, registry)

    def _repo(self, request: dict[str, Any]) -> _Repository:
        self._check_registry(request)
        name = request.get("repositoryName")
        repo = self._repos.get(name) if isinstance(name, str) else None
        if repo is None:
            raise _repository_not_found(str(name), self.registry_id)
        return repo

    def _upload(self, request: dict[str, Any]) -> Session:
        with self._lock:
            name = self._repo(request).name
        try:
            return self.uploads.get(name, str(request.get("uploadId", "")))
        except RegistryError:
            raise ServiceError(
                "UploadNotFoundException", "The upload could not be found."
            ) from None

    def _pull_through_rule(self, name: str) -> PullThroughRule | None:
        for rule in self.pull_through:
            if name.startswith(rule.prefix + "/"):
                return rule
        return None

    def _describe(self, repo: _Repository) -> dict[str, Any]:
        arn = f"arn:aws:ecr:{self.region_name}:{self.registry_id}:repository/{repo.name}"
        return {
            "repositoryArn": arn,
            "registryId": self.registry_id,
            "repositoryName": repo.name,
            "repositoryUri": f"{self._host()}/{repo.name}",
            "createdAt": repo.created_at.timestamp(),
            "imageTagMutability": repo.tag_mutability,
        }


def moves_immutable_tag(repo: _Repository, tag: str, digest: str) -> bool:
    """Return whether tagging *digest* as *tag* would move an immutable repository's tag."""
    return repo.tag_mutability == "IMMUTABLE" and repo.tags.get(tag, digest) != digest


def _repository_not_found(name: str, registry_id: str) -> ServiceError:
    return ServiceError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'",
    )
