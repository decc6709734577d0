"""One deadline for the whole request: a host that trickles a response's head, floods
``100 Continue`` or sends an error body a byte at a time is cut at the deadline.

Each of these ran for as long as the host liked before the watchdog (`_watchdog`): a
socket's read timeout restarts with every byte.
"""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR

from . import hostile
from .hostile import point_at
from .imaging import Synchronous

DEADLINE = 0.75


@pytest.fixture
def ecr(local_ecr: LocalECR) -> LocalECR:
    """``either``'s LocalECR: the one the environment and the default client point at."""
    return local_ecr


POLICY = ecr_layers.RetryPolicy(attempts=100, wait_initial=0.01, wait_jitter=0, timeout=DEADLINE)

BEHAVIOURS = {
    "a head a byte at a time": hostile.trickle_head(0.05),
    "a flood of 100 Continue": hostile.continue_flood(0.05),
    "an error body a byte at a time": hostile.trickle_error(0.05),
}


@pytest.mark.either(download_retry_policy=POLICY)
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_a_download_ends_by_its_deadline_whatever_the_head_does(
    behaviour: str, either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.serving(BEHAVIOURS[behaviour]) as host:
        point_at(monkeypatch, host)
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        elapsed = time.monotonic() - started
    # The deadline plus 2 s, as promised (the host would go on for minutes).
    assert elapsed < DEADLINE + 2, elapsed
    assert "deadline" in info.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.either(download_retry_policy=POLICY)
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_opening_a_layer_ends_by_its_deadline_whatever_the_head_does(
    behaviour: str, either: Synchronous, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.serving(BEHAVIOURS[behaviour]) as host:
        point_at(monkeypatch, host)
        started = time.monotonic()
        with (
            pytest.raises(ecr_layers.EndpointTimeout),
            either.open_layer("team/app", host.digest) as stream,
        ):
            stream.read()
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 2, elapsed


API_POLICY = ecr_layers.RetryPolicy(
    attempts=100, wait_initial=0.01, wait_jitter=0, timeout=DEADLINE
)
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("call", ["get_layer_url", "get_image"])
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_an_api_call_ends_by_its_deadline_whatever_the_head_does(
    behaviour: str, call: str, kind: str, local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in local_ecr.env().items():
        monkeypatch.setenv(name, value)
    with hostile.serving(BEHAVIOURS[behaviour]) as host:
        endpoint = f"http://127.0.0.1:{host.port}"
        args = ("team/app", DIGEST if call == "get_layer_url" else "v1")
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as info:
            _api_call(kind, endpoint, call, args)
        elapsed = time.monotonic() - started
        assert host.requests >= 1
    assert elapsed < DEADLINE + 2, elapsed
    assert "deadline" in info.value.message


def _api_call(kind: str, endpoint: str, call: str, args: tuple[str, str]) -> None:
    if kind == "sync":
        with ecr_layers.LayerClient(endpoint_url=endpoint, retry_policy=API_POLICY) as client:
            getattr(client, call)(*args)
        return
    from ecr_layers.aio import AsyncLayerClient

    async def main() -> None:
        async with AsyncLayerClient(endpoint_url=endpoint, retry_policy=API_POLICY) as client:
            await getattr(client, call)(*args)

    asyncio.run(main())


@pytest.mark.either(download_retry_policy=POLICY)
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_a_pull_ends_by_its_deadline_whatever_the_blob_host_does(
    behaviour: str,
    either: Synchronous,
    local_ecr: LocalECR,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ecr_layers.aio import AsyncLayerClient
    from ecr_layers.testing import tar_layer

    local_ecr.push_layers_image("team/app", "v1", [tar_layer({"a": b"a"})])
    with hostile.serving(BEHAVIOURS[behaviour]) as host:

        def urls(*args: object, **kwargs: object) -> dict[str, ecr_layers.LayerUrl]:
            digests = kwargs.get("layer_digests", args[2] if len(args) > 2 else [])
            return {d: ecr_layers.LayerUrl(host.url(), d) for d in digests}  # type: ignore[attr-defined]

        async def urls_async(*args: object, **kwargs: object) -> dict[str, ecr_layers.LayerUrl]:
            return urls(*args, **kwargs)

        monkeypatch.setattr(ecr_layers.LayerClient, "get_layer_urls", urls)
        monkeypatch.setattr(AsyncLayerClient, "get_layer_urls", urls_async)
        point_at(monkeypatch, host)  # renewals too
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout):
            either.pull_image("team/app", "v1", tmp_path / "layout")
        elapsed = time.monotonic() - started
        assert host.requests >= 1
    assert elapsed < DEADLINE + 2, elapsed
    assert not (tmp_path / "layout" / "index.json").exists()
    staging = tmp_path / "layout" / ".ecr-layers-staging"
    assert not staging.exists() or list(staging.iterdir()) == []


@pytest.mark.either(download_retry_policy=ecr_layers.RetryPolicy(wait_initial=0, wait_jitter=0))
def test_every_reconnect_of_a_stream_spends_the_retry_budget(
    either: Synchronous, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that gives one byte per connection moves the stream on every time: only the
    budget bounds it (before, 2,001 requests and counting)."""
    budget = ecr_layers.RetryBudget()
    monkeypatch.setattr(either.client, "budget", budget)
    with hostile.serving(hostile.one_byte_per_connection) as host:
        point_at(monkeypatch, host)
        with (
            pytest.raises(ecr_layers.EndpointUnreachable) as info,
            either.open_layer("team/app", host.digest) as stream,
        ):
            stream.read()
        # Each reconnect costs retry_cost; the budget pays for capacity / retry_cost.
        paid = budget.capacity // budget.retry_cost
        assert paid <= host.requests <= 2 * paid + 2, host.requests
    assert "retry budget" in info.value.message


def test_the_watchdog_never_sleeps_through_a_scope_added_as_it_goes_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scope added while the watchdog ticked its last idle tick was left unwatched: it
    went to sleep with the scope in its set, and the request it bounded hung."""
    import socket

    from ecr_layers import _watchdog

    monkeypatch.setattr(_watchdog, "TICK", 0.005)
    monkeypatch.setattr(_watchdog, "IDLE_AFTER", 1)
    watchdog = _watchdog.Watchdog()
    monkeypatch.setattr(_watchdog, "WATCHDOG", watchdog)
    for n in range(60):
        time.sleep(n % 7 * 0.002)  # land at every point of the tick, idle or not
        ours, theirs = socket.socketpair()
        with ours, theirs:
            scope = _watchdog.Scope(time.monotonic() + 0.01)
            scope.enter(ours)
            ours.settimeout(5)
            started = time.monotonic()
            assert ours.recv(1) == b""  # shut by the watchdog at the deadline
            assert time.monotonic() - started < 2, n
            scope.end()
