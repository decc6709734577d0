"""
Building botocore ECR clients with retries left to ecr-layers, reading how many
tries a client someone else built makes by itself, and `mapped_errors`, the one way
every API call (either client's) turns what botocore raises into our typed errors.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import attrs
from botocore import exceptions as bce
from botocore.config import Config

from ._exceptions import (
    ConfigurationError,
    ECRError,
    EndpointTimeout,
    ImageRef,
    InvalidParameter,
    UnknownError,
)
from ._retry import DOWNLOAD_POLICY, RetryPolicy
from ._url import check_endpoint_url
from ._watchdog import Scope, Watched, current_scope, enter_scope, watched_pools

if TYPE_CHECKING:
    from types import TracebackType

    import boto3
    import botocore.session
    from types_boto3_ecr.client import ECRClient

#: botocore's own retries off: tenacity is the only retry layer, so a persistent
#: ServerException costs exactly RetryPolicy.attempts requests, not attempts x 3.
_OUR_RETRIES: Any = {"mode": "standard", "total_max_attempts": 1}

#: What a client built here starts from.  The call is tiny, so short timeouts; the
#: pool is sized for `get_layer_urls`' worker threads.
BOTOCORE_CONFIG = Config(
    retries=_OUR_RETRIES,
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=32,
)


class mapped_errors:
    """Around one botocore (or aiobotocore) call: what botocore raises becomes the typed
    error for it, ``from`` it; anything else passes through untouched.

    *params* (a GetDownloadUrlForLayer request's) or *image* say what the call was
    about.  The call's wait for each answer, head and body, is bounded by *deadline*
    (``time.monotonic``; `_watchdog`), and by the bound already in force in this thread,
    if any (a download's, renewing its URL), which can also stop it; a call that ends
    past its deadline is `EndpointTimeout`.  An asyncio caller bounds its await itself.
    A class, not a generator: it is on every call's path, and the error map is imported
    only when something failed.
    """

    __slots__ = ("_deadline", "_image", "_params", "_previous", "_scope")

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        image: ImageRef | None = None,
        deadline: float | None = None,
    ) -> None:
        self._params = params
        self._image = image
        self._deadline = deadline
        self._previous: Scope | None = None
        self._scope: Scope | None = None

    def __enter__(self) -> None:
        outer = current_scope()
        if outer is not None:
            self._scope = outer.call(self._deadline)
        elif self._deadline is not None:
            self._scope = Scope(self._deadline, hold=True)
        if self._scope is not None:
            self._previous = enter_scope(self._scope)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        scope = self._scope
        if scope is not None:
            enter_scope(self._previous)
            scope.end()
        if not isinstance(exc, Exception):
            return
        from . import _mapping
        from ._lookups import context

        layer = context(self._params) if self._params is not None else None
        if scope is not None and scope.stopped:
            raise KeyboardInterrupt from None  # as a download stops: see _host.Job.cancel
        if scope is not None and (scope.late or scope.expired()) and not isinstance(exc, ECRError):
            raise EndpointTimeout(
                "the API call did not finish by its deadline", layer=layer, image=self._image
            ) from exc
        mapped = _mapping.from_botocore(exc, layer, self._image)
        if mapped is not None:
            raise mapped from exc


def watch(client: Any) -> None:
    """Bound *client*'s waits for an answer's head by the deadline of the call (see
    `mapped_errors`), as the downloads' are.  botocore's own timeouts restart with
    every byte; a botocore whose session is not the one known here keeps only those."""
    try:
        classes = client._endpoint.http_session._pool_classes_by_scheme
        http, https = classes["http"], classes["https"]
    except (AttributeError, KeyError, TypeError):
        return
    if not issubclass(https.ConnectionCls, Watched):
        # The mapping the pool managers read when they make a pool: none made yet is
        # the common case, and one made before keeps its plain connections.
        classes.update(watched_pools(http, https, api=True))


def deadline_of(policy: RetryPolicy) -> float | None:
    """When an API call under *policy*, starting now, must have ended."""
    return None if policy.timeout is None else time.monotonic() + policy.timeout


def botocore_attempts(client: Any) -> int:
    """Return how many tries botocore itself makes per call on *client*."""
    retries = client.meta.config.retries or {}
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1
    return 5 if retries.get("mode", "legacy") == "legacy" else 3


def check_arguments(
    client: object,
    *,
    session: object,
    region_name: object,
    endpoint_url: object,
    profile_name: object,
    config: object,
    retry_policy: object,
    download_retry_policy: object,
) -> None:
    """Check a client's constructor arguments (sync or async): the kinds, and that an
    existing client comes alone."""
    if client is not None and any(
        v is not None for v in (session, region_name, endpoint_url, profile_name, config)
    ):
        # Silently ignoring them would point the caller at an endpoint they did not ask for.
        raise ConfigurationError(
            "give either an existing client, or session/region/endpoint/profile/config"
        )
    check_settings(
        client=client,
        session=session,
        region_name=region_name,
        profile_name=profile_name,
        endpoint_url=endpoint_url,
        config=config,
        retry_policy=retry_policy,
        download_retry_policy=download_retry_policy,
    )


def policies(
    client: object, retry_policy: RetryPolicy | None, download_retry_policy: RetryPolicy | None
) -> tuple[RetryPolicy, RetryPolicy]:
    """The API's and the downloads' policies, for our own client (*client* None) or one
    handed in (which may retry by itself).  Downloads default to the API policy's waits and
    attempts, with the whole download's deadline."""
    api = (
        retry_policy or RetryPolicy()
        if client is None
        else policy_for_own_client(client, retry_policy)
    )
    if download_retry_policy is None:
        download_retry_policy = attrs.evolve(
            retry_policy or RetryPolicy(), timeout=DOWNLOAD_POLICY.timeout
        )
    return api, download_retry_policy


def check_settings(**settings: Any) -> None:
    """Raise `InvalidParameter` for a client setting of the wrong kind.

    Checked here, not left to botocore, whose answer to ``region_name=5`` or
    ``config="x"`` is a raw ``TypeError`` or ``AttributeError`` from deep inside.
    The endpoint URL's form is `check_endpoint_url`'s.
    """

    given = dict(settings)  # what was passed, for the message: the checks pop as they go

    def wrong(name: str, kind: str) -> InvalidParameter:
        value = given.get(name)
        return InvalidParameter(f"{name} must be {kind}, got {value!r:.60}", parameter=name)

    client = settings.pop("client")
    model = getattr(getattr(client, "meta", None), "service_model", None)
    if client is not None and getattr(model, "service_name", None) != "ecr":
        raise wrong("client", "a boto3 or botocore ECR client")
    session = settings.pop("session")
    if session is not None and not (
        hasattr(session, "client") or hasattr(session, "create_client")
    ):
        raise wrong("session", "a boto3 or botocore Session")
    config = settings.pop("config")
    if config is not None and not isinstance(config, Config):
        raise wrong("config", "a botocore.config.Config")
    for name in ("region_name", "profile_name", "endpoint_url"):
        value = settings.pop(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise wrong(name, "a non-empty str")
    for name, policy in settings.items():
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise wrong(name, "a RetryPolicy")


def client_config(config: Config | None) -> Config:
    """ecr-layers' botocore settings under the caller's, except retries: ours stay off."""
    if config is None:
        return BOTOCORE_CONFIG
    return BOTOCORE_CONFIG.merge(config).merge(Config(retries=_OUR_RETRIES))


@contextlib.contextmanager
def creating() -> Iterator[None]:
    """Raise what creating a (sync or async) botocore client raises as a typed error.

    Creating a client asks ECR nothing: what botocore refuses then, unless the error map
    knows better (credentials, the network), is a setting it cannot use, a
    `ConfigurationError`: an unparseable config file, ``AWS_DEFAULTS_MODE=bogus``, an
    unknown profile, and whatever setting botocore learns to check next.
    """
    try:
        yield
    except (bce.BotoCoreError, ValueError) as exc:
        if isinstance(exc, ECRError):
            raise
        from . import _mapping

        # botocore's "Invalid endpoint" is a bare ValueError.
        mapped = _mapping.from_botocore_error(exc, None)
        if type(mapped) is UnknownError:
            mapped = ConfigurationError(mapped.message)
        raise mapped from exc


def make_client(
    session: boto3.Session | botocore.session.Session | None,
    region_name: str | None,
    endpoint_url: str | None,
    profile_name: str | None,
    config: Config | None,
) -> ECRClient:
    with creating():
        if session is None:
            # botocore directly, not boto3: importing boto3 costs start-up time and
            # memory that a client of one operation has no use for.
            import botocore.session

            session = botocore.session.Session(profile=profile_name)
        elif profile_name is not None:
            raise ConfigurationError("give either a session or a profile_name, not both")
        # boto3 sessions call it client(), botocore sessions create_client().
        make = session.client if hasattr(session, "client") else session.create_client
        if endpoint_url is not None:
            check_endpoint_url(endpoint_url)  # before botocore sees it
        client = make(
            "ecr", region_name=region_name, endpoint_url=endpoint_url, config=client_config(config)
        )
        if endpoint_url is None:
            # It came from the environment or the config files: checked as it resolved.
            check_endpoint_url(client.meta.endpoint_url)
    return cast("ECRClient", client)


def policy_for_own_client(client: Any, policy: RetryPolicy | None) -> RetryPolicy:
    theirs = botocore_attempts(client)
    if theirs <= 1:
        return policy or RetryPolicy()
    if policy is None:
        return RetryPolicy(attempts=1)
    if policy.attempts > 1:
        warnings.warn(
            f"this ECR client retries {theirs} times by itself and the RetryPolicy "
            f"{policy.attempts} times: up to {theirs * policy.attempts} requests per call. "
            "Build the client with ecr_layers.BOTOCORE_CONFIG to leave retrying to ecr-layers.",
            stacklevel=4,  # the caller of LayerClient(...) or AsyncLayerClient(...)
        )
    return policy
