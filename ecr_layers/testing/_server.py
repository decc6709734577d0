"""
LocalECR: a real HTTP ECR endpoint on loopback, with fault injection and request counts.

This module holds the endpoint's state and public face; the HTTP handling, the
operations it serves, the faults and the URL signing live in modules of their own.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from . import _seed, _signing
from ._auth import RegistryTokens
from ._faults import Faults, Stats
from ._handler import Handler, Server
from ._layers import Layer
from ._oci import Kind
from ._seed import SeededImage, SeededManifest
from ._store import PullThroughRule, Registry

if TYPE_CHECKING:
    import botocore.session
    from types_boto3_ecr.client import ECRClient

    from ecr_layers import LayerClient, RetryPolicy

DEFAULT_ACCESS_KEY_ID = "AKIALOCALECR00000000"
DEFAULT_SECRET_ACCESS_KEY = "localecr/secret/access/key/0000000000000"  # noqa: S105 (a documented test default)
DEFAULT_REGION = "us-east-1"
DEFAULT_REGISTRY_ID = "123456789012"


class LocalECR:
    """An ECR endpoint on loopback that botocore, boto3 and the AWS CLI can talk to.

    Use it as a context manager::

        with LocalECR() as ecr:
            [digest] = ecr.push_image("team/app", [b"layer bytes"])
            url = ecr.client().get_layer_url("team/app", digest)

    Requests must be SigV4-signed with `access_key_id` / `secret_access_key`.
    """

    _session: ClassVar[botocore.session.Session | None] = None
    _session_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region_name: str = DEFAULT_REGION,
        registry_id: str = DEFAULT_REGISTRY_ID,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY,
        url_expires: int = 3600,
        storage_dir: str | os.PathLike[str] | None = None,
        create_repositories_on_push: bool = False,
    ) -> None:
        self.region_name = region_name
        self.registry_id = registry_id
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        #: Lifetime of the download URLs handed out, in seconds.
        self.url_expires = url_expires
        self.faults = Faults()
        #: The registry API's passwords; ``tokens.lifetime`` is a new token's, in seconds.
        self.tokens = RegistryTokens()
        #: Let a registry API push create its repository, where ECR answers NAME_UNKNOWN.
        self.create_repositories_on_push = create_repositories_on_push
        #: Answer a registry API blob GET with a redirect to a signed download URL, as
        #: ECR sends clients to S3; False serves the bytes from ``/v2/`` itself.
        self.redirect_blobs = True
        self.stats = Stats()
        self._url_key = os.urandom(32)
        self._server = Server((host, port), Handler)
        self._server.ecr = self
        self._thread: threading.Thread | None = None
        self.registry = Registry(
            registry_id=registry_id,
            region_name=region_name,
            host=lambda: self.endpoint_url.split("://", 1)[1],
            storage_dir=storage_dir,
        )

    @property
    def endpoint_url(self) -> str:
        """The URL to give botocore as ``endpoint_url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def registry_host(self) -> str:
        """The registry API's ``host:port``, as image references name it (``HOST/repo:tag``)."""
        return self.endpoint_url.split("://", 1)[1]

    def login_password(self) -> str:
        """Return a fresh registry password, as ``aws ecr get-login-password`` prints one.

        The user name is ``AWS``.  Valid for ``tokens.lifetime`` seconds, or until
        `expire_tokens`.
        """
        return self.tokens.issue()[0]

    def expire_tokens(self) -> None:
        """Make every registry password issued so far expired (401 from ``/v2/``)."""
        self.tokens.expire_all()

    def start(self) -> LocalECR:
        """Start serving in a background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_until_stopped, name="LocalECR", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.stop_serving()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.registry.blobs.close()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the ``ecr-layers serve`` command)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()
            self.registry.blobs.close()

    def __enter__(self) -> LocalECR:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- seeding ----------------------------------------------------------------------

    def create_repository(self, repository_name: str) -> None:
        """Create a repository (no error if it exists)."""
        self.registry.create_repository(repository_name)

    def push_image(
        self,
        repository_name: str,
        layers: Sequence[bytes | Layer],
        tag: str | None = "latest",
    ) -> list[str]:
        """Store *layers* and a linux/amd64 image that references them; return the layers' digests.

        Raw bytes are stored as given; the config names them by their own digest
        unless they are a gzip'd tar (then by the tar's).
        """
        return _seed.push_image(self.registry, repository_name, layers, tag)

    def push_layers_image(
        self,
        repository_name: str,
        tag: str | None,
        layers: Sequence[Layer],
        *,
        platform: str = "linux/amd64",
        kind: Kind = "oci",
    ) -> SeededManifest:
        """Store one image manifest of *layers* (``"oci"`` or ``"docker"``) for *platform*.

        Tagged *tag* unless it is None.  Its config names *platform* and the layers'
        real diff_ids.
        """
        return _seed.push_layers_image(
            self.registry, repository_name, tag, layers, platform=platform, kind=kind
        )

    def push_platform_image(
        self,
        repository_name: str,
        tag: str,
        *,
        platforms: Sequence[str] = _seed.DEFAULT_PLATFORMS,
        layers: Mapping[str, Sequence[Layer]] | None = None,
        kind: Kind = "oci",
        attestation: bool = True,
    ) -> SeededImage:
        """Store a multi-platform image: a manifest per platform, and an index tagged *tag*.

        *kind* ``"oci"`` writes OCI manifests and an OCI index, ``"docker"`` Docker v2
        manifests and a manifest list.  Each platform's layers are *layers[platform]*,
        or by default a base layer shared by every platform and one of its own.  With
        *attestation* (OCI only), the index also names a provenance attestation of the
        first platform's manifest, as buildx writes one.
        """
        return _seed.push_platform_image(
            self.registry,
            repository_name,
            tag,
            platforms=platforms,
            layers=layers,
            kind=kind,
            attestation=attestation,
        )

    def add_layer(self, repository_name: str, data: bytes) -> str:
        """Upload a layer that no image references (so it is inaccessible); return its digest."""
        return self.registry.add_layer(repository_name, data)

    def add_pull_through_cache_rule(self, prefix: str, *, upstream_reachable: bool = False) -> None:
        """Serve repositories under *prefix* as a pull-through cache."""
        self.registry.pull_through.append(PullThroughRule(prefix, upstream_reachable))

    def seed_demo(self) -> tuple[str, list[str]]:
        """Push the demo image; return its repository name and its linux/amd64 layers' digests.

        Pushes `seed_demo_image`'s image and answers in the shape ``ecr-layers
        serve --seed`` prints: something to try ``url`` and ``download`` against at once.
        """
        image = self.seed_demo_image()
        amd64 = image.manifests["linux/amd64"]
        return image.repository_name, [layer.digest for layer in amd64.layers]

    def seed_demo_image(self) -> SeededImage:
        """Push the demo image and return it.

        ``demo/app:v1`` is an OCI index for linux/amd64 and linux/arm64/v8 (with an
        attestation); each platform's manifest has three layers (gzip'd tars of random bytes),
        64 KiB (shared by both), 1 MiB and 8 MiB.  It is stored directly, not through
        the API, so it works before the endpoint serves.
        """
        return _seed.push_demo_image(self.registry)

    # -- clients ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS tools at this endpoint."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region_name,
            "AWS_REGION": self.region_name,
        }

    def botocore_client(self, **config: Any) -> ECRClient:
        """Return a plain botocore ECR client for this endpoint (botocore's retries off)."""
        import botocore.session
        from botocore.config import Config

        from ecr_layers import BOTOCORE_CONFIG

        # One session for every LocalECR's clients in the process: a session costs five
        # times what a client made from it does (botocore registers its handlers anew),
        # and everything that differs between endpoints is passed to create_client.
        # Sessions are not thread-safe, hence the lock.
        with LocalECR._session_lock:
            if LocalECR._session is None:
                LocalECR._session = botocore.session.Session()
            client = LocalECR._session.create_client(
                "ecr",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                config=BOTOCORE_CONFIG.merge(Config(**config)),
            )
        return client  # type: ignore[return-value]

    def client(self, *, retry_policy: RetryPolicy | None = None, **config: Any) -> LayerClient:
        """Return a `LayerClient` for this endpoint."""
        from ecr_layers import LayerClient

        return LayerClient(self.botocore_client(**config), retry_policy=retry_policy)

    # -- URLs -------------------------------------------------------------------------

    def download_url(self, repository_name: str, digest: str, *, expired: bool = False) -> str:
        """Return a pre-signed blob URL as ``GetDownloadUrlForLayer`` hands out.

        With *expired*, one that expired a minute ago (what `Faults.expire_next_urls`
        makes the operation hand out).
        """
        signed_at = dt.datetime.now(dt.UTC)
        if expired:
            signed_at -= dt.timedelta(seconds=self.url_expires + 60)
        return _signing.presign(
            self._url_key,
            endpoint_url=self.endpoint_url,
            repository_name=repository_name,
            digest=digest,
            access_key_id=self.access_key_id,
            region_name=self.region_name,
            expires=self.url_expires,
            signed_at=signed_at,
        )

    def _check_url(self, path: str, query: dict[str, str]) -> tuple[int, str, str] | None:
        """Return (status, S3 code, message) if the blob URL may not be used."""
        return _signing.check(self._url_key, path, query)
