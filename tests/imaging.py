"""What the image and download tests share: a LocalECR, a client on it with fast retries,
the same client as either kind (``either``), and names.

Registered as a plugin in conftest.py, so its fixtures reach every test module; a
module that defines its own ``ecr`` or ``client`` keeps its own (and ``either`` then
runs on that module's ``ecr``).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR

REPO = "team/app"
FAST = ecr_layers.RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.002, wait_jitter=0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "either(**settings): client settings (retry_policy=..., download_retry_policy=...) "
        "for the either fixture, in place of retry_policy=FAST",
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def ecr() -> Iterator[LocalECR]:
    with LocalECR() as server:
        yield server


@pytest.fixture
def client(ecr: LocalECR) -> Iterator[ecr_layers.LayerClient]:
    with ecr.client(retry_policy=FAST) as layer_client:
        yield layer_client


# -- one test, both clients -------------------------------------------------------------


class Synchronous:
    """A client whose methods return their results, whichever kind it wraps.

    Around an asyncio object, each method's awaitable is run to its end on the
    fixture's loop, and what it returns that is used with ``async with`` (the stream
    ``open_layer`` opens) is wrapped in turn; ``with`` works on either kind.
    """

    def __init__(self, client: Any, run: Callable[[Awaitable[Any]], Any] | None) -> None:
        self.client = client
        self._run = run

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.client, name)
        if self._run is None or not callable(value):
            return value
        run = self._run

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.isawaitable(result):
                result = run(result)
            if hasattr(result, "__aenter__"):
                return Synchronous(result, run)
            return result

        return call

    def __enter__(self) -> Synchronous:
        if self._run is None:
            self.client.__enter__()
        else:
            self._run(self.client.__aenter__())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._run is None:
            self.client.__exit__(*exc_info)
        else:
            self._run(self.client.__aexit__(*exc_info))


@pytest.fixture(params=["sync", "async"])
def either(request: pytest.FixtureRequest, ecr: LocalECR) -> Iterator[Synchronous]:
    """The same calls through `LayerClient` or `AsyncLayerClient` (on a loop of its own).

    Both have ``retry_policy=FAST``, or the settings of the test's ``either`` marker.
    """
    marker = request.node.get_closest_marker("either")
    settings: dict[str, Any] = {"retry_policy": FAST, **(marker.kwargs if marker else {})}
    if request.param == "sync":
        with ecr_layers.LayerClient(ecr.botocore_client(), **settings) as client:
            yield Synchronous(client, None)
        return
    from ecr_layers.aio import AsyncLayerClient

    loop = asyncio.new_event_loop()
    aclient = AsyncLayerClient(
        endpoint_url=ecr.endpoint_url, region_name=ecr.region_name, **settings
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in ecr.env().items():
                patch.setenv(name, value)
            yield Synchronous(aclient, loop.run_until_complete)
    finally:
        loop.run_until_complete(aclient.close())
        loop.close()


def patch_lookups(
    monkeypatch: pytest.MonkeyPatch,
    answer: Callable[[ecr_layers.LayerRef, ecr_layers.LayerUrl | None], ecr_layers.LayerUrl],
    *,
    real: bool = False,
) -> None:
    """Make every URL lookup, of either client, answer with ``answer(layer, url)``.

    *url* is what the real lookup answered, when *real*; None otherwise.
    """
    from ecr_layers.aio import AsyncLayerClient

    real_sync, real_async = ecr_layers.LayerClient.lookup_once, AsyncLayerClient.lookup_once

    def lookup_once(self: Any, layer: ecr_layers.LayerRef) -> ecr_layers.LayerUrl:
        return answer(layer, real_sync(self, layer) if real else None)

    async def lookup_once_async(self: Any, layer: ecr_layers.LayerRef) -> ecr_layers.LayerUrl:
        return answer(layer, await real_async(self, layer) if real else None)

    monkeypatch.setattr(ecr_layers.LayerClient, "lookup_once", lookup_once)
    monkeypatch.setattr(AsyncLayerClient, "lookup_once", lookup_once_async)


# -- BatchGetImage answers the service should never send, sent over HTTP ------------------


def serve_images(ecr: LocalECR, *images: dict[str, Any]) -> None:
    """Make LocalECR answer the next ``BatchGetImage`` with *images*, as they are."""
    body = json.dumps({"images": list(images), "failures": []}).encode()
    ecr.faults.fail_next("BatchGetImage", status=200, body=body)


def image_answer(
    text: str, digest: str | None = None, media_type: str | None = None
) -> dict[str, Any]:
    """One image of a ``BatchGetImage`` answer: *text* under *digest* (by default its own)."""
    image: dict[str, Any] = {
        "imageId": {"imageDigest": digest or sha256(text.encode())},
        "imageManifest": text,
    }
    if media_type is not None:
        image["imageManifestMediaType"] = media_type
    return image
