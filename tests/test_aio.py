"""ecr_layers.aio: the same contract as the synchronous client, checked through both.

Where the behaviour is the same, one test runs against `LayerClient` and
`AsyncLayerClient` alike (``either``); what only asyncio has is tested after.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pathlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import ecr_layers
from ecr_layers.aio import AsyncLayerClient
from ecr_layers.testing import LocalECR, tar_layer

from .imaging import FAST, REPO

UNKNOWN = "sha256:" + "0" * 64


class Synchronous:
    """A client whose methods return their results, whichever kind it wraps."""

    def __init__(self, client: Any, run: Callable[[Awaitable[Any]], Any] | None) -> None:
        self.client = client
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if self._run is None:
            return method  # type: ignore[no-any-return]
        run = self._run
        return lambda *args, **kwargs: run(method(*args, **kwargs))


@pytest.fixture(params=["sync", "async"])
def either(request: pytest.FixtureRequest, ecr: LocalECR) -> Iterator[Synchronous]:
    """The same calls through `LayerClient` or `AsyncLayerClient` (on a loop of its own)."""
    if request.param == "sync":
        with ecr.client(retry_policy=FAST) as client:
            yield Synchronous(client, None)
        return
    loop = asyncio.new_event_loop()
    aclient = AsyncLayerClient(
        endpoint_url=ecr.endpoint_url, region_name=ecr.region_name, retry_policy=FAST
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in ecr.env().items():
                patch.setenv(name, value)
            yield Synchronous(aclient, loop.run_until_complete)
    finally:
        loop.run_until_complete(aclient.close())
        loop.close()


def test_a_layer_url_and_its_typed_errors(ecr: LocalECR, either: Synchronous) -> None:
    [digest] = ecr.push_image(REPO, [b"layer bytes"])
    orphan = ecr.add_layer(REPO, b"referenced by no image")
    url = either.get_layer_url(REPO, digest)
    assert isinstance(url, ecr_layers.LayerUrl)
    assert url.layer_digest == digest
    assert "REDACTED" in repr(url)
    ecr.stats.reset()
    with pytest.raises(ecr_layers.LayersNotFound) as missing:
        either.get_layer_url(REPO, UNKNOWN)
    assert (missing.value.repository_name, missing.value.layer_digest) == (REPO, UNKNOWN)
    with pytest.raises(ecr_layers.LayerInaccessible):
        either.get_layer_url(REPO, orphan)
    with pytest.raises(ecr_layers.RepositoryNotFound):
        either.get_layer_url("team/none", digest)
    assert ecr.stats.count("GetDownloadUrlForLayer") == 3  # none retried


@pytest.mark.parametrize(
    ("repository", "digest"),
    [("Bad_Name", "sha256:" + "a" * 64), (REPO, "notadigest"), (REPO, None), (42, "sha256:ab")],
)
def test_bad_input_is_refused_before_any_request(
    ecr: LocalECR, either: Synchronous, repository: Any, digest: Any
) -> None:
    ecr.stats.reset()
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_layer_url(repository, digest)
    with pytest.raises(ecr_layers.InvalidParameter):
        either.get_image(REPO, "bad tag")
    assert ecr.stats.count() == 0


def test_server_errors_are_retried_exactly_attempts_times(
    ecr: LocalECR, either: Synchronous
) -> None:
    [digest] = ecr.push_image(REPO, [b"layer"])
    ecr.faults.fail_next("GetDownloadUrlForLayer", 100)
    ecr.stats.reset()
    with pytest.raises(ecr_layers.ServerError) as caught:
        either.get_layer_url(REPO, digest)
    assert ecr.stats.count("GetDownloadUrlForLayer") == FAST.attempts
    assert caught.value.attempts == FAST.attempts
    ecr.faults.clear()
    ecr.faults.fail_next("GetDownloadUrlForLayer", 2)
    ecr.stats.reset()
    assert either.get_layer_url(REPO, digest).layer_digest == digest
    assert ecr.stats.count("GetDownloadUrlForLayer") == 3


def test_a_batch_keeps_each_error_in_its_slot(ecr: LocalECR, either: Synchronous) -> None:
    digests = ecr.push_image(REPO, [os.urandom(100) for _ in range(5)])
    ecr.stats.reset()
    results = either.get_layer_urls(REPO, [*digests, UNKNOWN, digests[0]])
    assert list(results) == [*digests, UNKNOWN]
    assert all(isinstance(results[d], ecr_layers.LayerUrl) for d in digests)
    error = results[UNKNOWN]
    assert isinstance(error, ecr_layers.LayersNotFound)
    assert error.__traceback__ is None
    assert ecr.stats.count("GetDownloadUrlForLayer") == 6
    with pytest.raises(TypeError):
        either.get_layer_urls(REPO, digests[0])
    assert either.get_layer_urls(REPO, []) == {}


def test_an_index_resolves_to_a_platform_in_two_calls(ecr: LocalECR, either: Synchronous) -> None:
    seeded = ecr.push_platform_image(REPO, "multi", platforms=("linux/amd64", "linux/arm64/v8"))
    ecr.stats.reset()
    image = either.get_image(REPO, "multi", platform="linux/arm64")
    assert image.digest == seeded.manifests["linux/arm64/v8"].digest
    assert image.platforms == ("linux/amd64", "linux/arm64/v8")
    assert ecr.stats.count("BatchGetImage") == 2
    with pytest.raises(ecr_layers.PlatformNotFound):
        either.get_image(REPO, "multi", platform="linux/s390x")


@pytest.mark.parametrize("code", ["UpstreamUnavailable", "KmsError", "ImageNotFound"])
def test_image_failure_codes_are_typed_and_retried_alike(
    ecr: LocalECR, either: Synchronous, code: str
) -> None:
    from ecr_layers._mapping import BY_FAILURE_CODE

    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.faults.fail_next_images(code, times=10)
    ecr.stats.reset()
    cls = BY_FAILURE_CODE[code]
    with pytest.raises(cls):
        either.get_image(REPO, "v1")
    assert ecr.stats.count("BatchGetImage") == (FAST.attempts if cls.retryable else 1)


def test_a_closed_client_refuses_calls(ecr: LocalECR, either: Synchronous) -> None:
    [digest] = ecr.push_image(REPO, [b"layer"])
    either.close()
    either.close()  # idempotent
    with pytest.raises(ecr_layers.ConfigurationError, match="closed"):
        either.get_layer_url(REPO, digest)
    assert "closed=True" in repr(either.client)


# -- asyncio only ---------------------------------------------------------------------


def async_client(ecr: LocalECR, **kwargs: Any) -> AsyncLayerClient:
    return AsyncLayerClient(endpoint_url=ecr.endpoint_url, region_name=ecr.region_name, **kwargs)


def test_many_concurrent_lookups_share_one_client(ecr: LocalECR) -> None:
    digests = ecr.push_image(REPO, [os.urandom(64) for _ in range(20)])

    async def main() -> list[ecr_layers.LayerUrl]:
        async with async_client(ecr) as client:
            return await asyncio.gather(
                *(client.get_layer_url(REPO, digests[n % 20]) for n in range(200))
            )

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        ecr.stats.reset()
        urls = asyncio.run(main())
    assert [u.layer_digest for u in urls] == [digests[n % 20] for n in range(200)]
    assert ecr.stats.count("GetDownloadUrlForLayer", status=200) == 200
    gc.collect()  # an unclosed session would warn here, and warnings are errors


def test_the_default_client_is_one_per_loop_and_closed_with_it(local_ecr: LocalECR) -> None:
    from ecr_layers import aio

    [digest] = local_ecr.push_image(REPO, [b"layer"])
    clients: list[AsyncLayerClient] = []

    async def main() -> str:
        url = await aio.get_layer_url(REPO, digest)
        clients.append(await aio.default_client())
        assert await aio.default_client() is clients[-1]
        return url.layer_digest

    assert asyncio.run(main()) == digest
    assert asyncio.run(main()) == digest  # a new loop: a new client
    assert clients[0] is not clients[1]
    assert all(client._closed for client in clients)  # closed as each loop shut down
    gc.collect()


def test_close_default_client_and_use_after(local_ecr: LocalECR) -> None:
    from ecr_layers import aio

    [digest] = local_ecr.push_image(REPO, [b"layer"])

    async def main() -> None:
        first = await aio.default_client()
        await aio.get_layer_url(REPO, digest)
        await aio.close_default_client()
        assert first._closed
        with pytest.raises(ecr_layers.ConfigurationError):
            await first.get_layer_url(REPO, digest)
        assert (await aio.get_layer_url(REPO, digest)).layer_digest == digest

    asyncio.run(main())


def test_a_self_retrying_client_handed_in_is_not_retried_again(ecr: LocalECR) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    [digest] = ecr.push_image(REPO, [b"layer"])

    async def main() -> int:
        session = AioSession()
        async with session.create_client(
            "ecr",
            endpoint_url=ecr.endpoint_url,
            region_name=ecr.region_name,
            aws_access_key_id=ecr.access_key_id,
            aws_secret_access_key=ecr.secret_access_key,
            config=AioConfig(retries={"mode": "standard", "total_max_attempts": 3}),
        ) as theirs:
            client = AsyncLayerClient(theirs)
            assert client.retry_policy.attempts == 1
            with pytest.raises(ecr_layers.ServerError):
                await client.get_layer_url(REPO, digest)
            await client.close()  # theirs stays theirs: still usable
            found = await theirs.describe_repositories(repositoryNames=[REPO])
            return len(found["repositories"])

    ecr.faults.fail_next("GetDownloadUrlForLayer", 100)
    ecr.stats.reset()
    assert asyncio.run(main()) == 1
    assert ecr.stats.count("GetDownloadUrlForLayer") == 3  # botocore's 3, not 3 x 5


def test_bad_settings_are_typed_errors() -> None:
    with pytest.raises(ecr_layers.ConfigurationError):
        AsyncLayerClient(endpoint_url="notaurl")
    with pytest.raises(ecr_layers.ConfigurationError):
        AsyncLayerClient(region_name=5)  # type: ignore[arg-type]
    with pytest.raises(ecr_layers.ConfigurationError):
        AsyncLayerClient(retry_policy="fast")  # type: ignore[arg-type]


def test_a_client_belongs_to_the_loop_that_opened_it(ecr: LocalECR) -> None:
    [digest] = ecr.push_image(REPO, [b"layer"])
    client = async_client(ecr)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        first = asyncio.new_event_loop()
        try:
            assert first.run_until_complete(client.get_layer_url(REPO, digest))
            with pytest.raises(ecr_layers.ConfigurationError, match="another event loop"):
                asyncio.run(client.get_layer_url(REPO, digest))
        finally:
            first.run_until_complete(client.close())
            first.close()


# -- downloads, through both clients --------------------------------------------------


def test_a_download_lands_verified(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    seen: list[tuple[int, int | None]] = []
    path = either.download_layer(REPO, digest, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_cut_download_resumes_and_an_expired_url_is_renewed(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    ecr.faults.truncate_next_blobs(1, after=1_000_000)
    ecr.stats.reset()
    assert either.download_layer(REPO, digest, tmp_path / "a").read_bytes() == data
    assert ecr.stats.blob_count(digest) == 2
    assert ecr.stats.count("GetDownloadUrlForLayer") == 1
    ecr.faults.expire_next_urls(1)
    ecr.stats.reset()
    assert either.download_layer(REPO, digest, tmp_path / "b").read_bytes() == data
    assert ecr.stats.count("GetDownloadUrlForLayer") == 2


def test_a_host_that_ignores_range_still_gives_the_right_bytes(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    ecr.faults.ignore_range = True
    ecr.faults.truncate_next_blobs(1, after=500_000)
    assert either.download_layer(REPO, digest, tmp_path / "a").read_bytes() == data


def test_corrupt_bytes_never_land(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    [digest] = ecr.push_image(REPO, [os.urandom(100_000)])
    ecr.faults.corrupt_next_blobs(1)
    with pytest.raises(ecr_layers.DigestMismatch) as caught:
        either.download_layer(REPO, digest, tmp_path)
    assert caught.value.layer_digest == digest
    assert list(tmp_path.iterdir()) == []


def test_cuts_that_never_progress_end_within_attempts(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    [digest] = ecr.push_image(REPO, [os.urandom(3 * 1024 * 1024)])
    ecr.faults.ignore_range = True
    ecr.faults.truncate_next_blobs(10**6, after=1000)
    ecr.stats.reset()
    with pytest.raises(ecr_layers.EndpointUnreachable) as caught:
        either.download_layer(REPO, digest, tmp_path)
    assert ecr.stats.blob_count() == FAST.attempts + 1
    assert caught.value.attempts == FAST.attempts + 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "answer",
    [
        (404, "NoSuchKey", ecr_layers.LayersNotFound),
        (403, "AccessDenied", ecr_layers.AccessDenied),
        (503, "SlowDown", ecr_layers.Throttled),
    ],
    ids=lambda a: str(a[0]),
)
def test_the_download_hosts_answers_are_typed_alike(
    ecr: LocalECR,
    either: Synchronous,
    tmp_path: pathlib.Path,
    answer: tuple[int, str, type[ecr_layers.ECRError]],
) -> None:
    status, code, error = answer
    [digest] = ecr.push_image(REPO, [os.urandom(1000)])
    ecr.faults.fail_next_blobs(10, status=status, code=code)
    with pytest.raises(error) as caught:
        either.download_layer(REPO, digest, tmp_path)
    assert "X-Amz-Signature" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_slow_link_goes_parallel_alike(
    ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path
) -> None:
    from ecr_layers import _transfer

    data = os.urandom(9 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    ecr.stats.reset()
    path = either.download_layer(REPO, digest, tmp_path, parallel=3)
    assert path.read_bytes() == data
    # One first chunk, then the rest in CHUNK_SIZE ranges.
    assert ecr.stats.blob_count(digest) == -(-len(data) // _transfer.CHUNK_SIZE)


def test_cancelling_a_download_leaves_nothing(ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    ecr.faults.bandwidth = 512 * 1024  # 8 s: long enough to be cancelled

    async def main() -> None:
        async with async_client(ecr) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await client.download_layer(REPO, digest, tmp_path)
            assert client._session_http is not None
            connector = client._session_http.connector
            assert connector is not None
            # No connection is left open, and none went back to the pool half-read.
            assert sum(len(c) for c in connector._conns.values()) == 0
            assert len(connector._acquired) == 0

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        asyncio.run(main())
    assert list(tmp_path.iterdir()) == []
    gc.collect()


# -- streams and configs, through both clients ------------------------------------------


class Stream:
    """``open_layer``'s reader, read the same way whichever client opened it."""

    def __init__(self, either: Synchronous, stream: Any) -> None:
        self._either, self._stream = either, stream

    def read(self, size: int = -1) -> bytes:
        result = self._stream.read(size)
        if self._either._run is not None:
            result = self._either._run(result)
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        result = self._stream.close()
        if self._either._run is not None:
            self._either._run(result)


def test_a_stream_resumes_renews_and_verifies_alike(ecr: LocalECR, either: Synchronous) -> None:
    from ecr_layers.testing import random_layer

    layer = random_layer(3 * 1024 * 1024, seed=5)
    ecr.push_layers_image(REPO, "v1", [layer])
    ecr.faults.truncate_next_blobs(1, after=1024 * 1024)
    ecr.faults.expire_next_urls(1)
    ecr.stats.reset()
    stream = Stream(either, either.open_layer(REPO, layer.digest))
    assert stream.read() == layer.data
    assert stream.read(10) == b""
    stream.close()
    assert ecr.stats.blob_count(layer.digest) == 2
    assert ecr.stats.count("GetDownloadUrlForLayer") == 2
    ecr.faults.corrupt_next_blobs(1)
    stream = Stream(either, either.open_layer(REPO, layer.digest))

    def read_all() -> None:
        while stream.read(100_000):
            pass

    with pytest.raises(ecr_layers.DigestMismatch):
        read_all()
    with pytest.raises(ecr_layers.DigestMismatch):
        stream.read(1)
    stream.close()


def test_a_stream_bounded_by_its_descriptor(ecr: LocalECR, either: Synchronous) -> None:
    layer = tar_layer({"a.txt": b"a" * 10_000})
    ecr.push_layers_image(REPO, "v1", [layer])
    image = either.get_image(REPO, "v1")
    small = ecr_layers.Descriptor(layer_media(image), layer.digest, len(layer.data) - 1)
    with pytest.raises(ecr_layers.BlobTooLarge):
        Stream(either, either.open_layer(REPO, small)).read()


def layer_media(image: ecr_layers.Image) -> str:
    return image.layers[0].media_type


def test_configs_alike(ecr: LocalECR, either: Synchronous) -> None:
    layers = [tar_layer({"a.txt": b"alpha"})]
    ecr.push_layers_image(REPO, "v1", layers, platform="linux/arm64/v8")
    image = either.get_image(REPO, "v1")
    config = either.get_config(image)
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in layers]
    assert either.get_config(REPO, "v1") == config
    ecr.stats.reset()
    with pytest.raises(ecr_layers.BlobTooLarge):
        either.get_config(image, max_bytes=image.config.size - 1)
    assert ecr.stats.count() == 0
    ecr.faults.corrupt_next_blobs(1)
    with pytest.raises(ecr_layers.DigestMismatch):
        either.get_config(image)


def test_pulls_alike(ecr: LocalECR, either: Synchronous, tmp_path: pathlib.Path) -> None:
    from .test_pull import check_layout, skopeo_checks, staged

    base, one = tar_layer({"base.txt": b"b" * 100}), tar_layer({"one.txt": b"1" * 100})
    ecr.push_layers_image(REPO, "v1", [base, one])
    layout = tmp_path / "layout"
    ecr.stats.reset()
    seen: list[tuple[int, int | None]] = []
    image = either.pull_image(REPO, "v1", layout, progress=lambda d, t: seen.append((d, t)))
    assert ecr.stats.count("BatchGetImage") == 1
    assert ecr.stats.count("GetDownloadUrlForLayer") == 3
    assert ecr.stats.blob_count() == 3
    assert seen[-1] == (image.total_size, image.total_size)
    [entry] = check_layout(layout)["manifests"]
    assert entry["digest"] == image.digest
    assert staged(layout) == []
    ecr.stats.reset()
    assert either.pull_image(REPO, "v1", layout) == image
    assert ecr.stats.blob_count() == 0
    skopeo_checks(layout, "v1", image)


def test_cancelling_a_pull_leaves_the_index_alone(ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    from ecr_layers.testing import random_layer

    from .test_pull import check_layout, staged

    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    ecr.push_layers_image(REPO, "v2", [random_layer(2 * 1024 * 1024, seed=n) for n in range(3)])
    layout = tmp_path / "layout"

    async def main() -> None:
        async with async_client(ecr) as client:
            await client.pull_image(REPO, "v1", layout)
            before = (layout / "index.json").read_bytes()
            ecr.faults.bandwidth = 256 * 1024
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await client.pull_image(REPO, "v2", layout)
            assert (layout / "index.json").read_bytes() == before

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        asyncio.run(main())
    check_layout(layout)
    assert staged(layout) == []


def test_no_signature_travels_with_an_async_transport_error(
    ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    import traceback

    [digest] = ecr.push_image(REPO, [os.urandom(3 * 1024 * 1024)])
    ecr.faults.ignore_range = True
    ecr.faults.truncate_next_blobs(10**6, after=1000)

    async def main() -> BaseException:
        async with async_client(ecr, download_retry_policy=FAST) as client:
            try:
                await client.download_layer(REPO, digest, tmp_path)
            except ecr_layers.EndpointUnreachable as exc:
                return exc
        raise AssertionError("the download did not fail")

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        error = asyncio.run(main())
    text = "".join(traceback.format_exception(error))
    assert "X-Amz-Signature=" not in text
    assert "X-Amz-Credential=" not in text
    link: BaseException | None = error
    while link is not None:
        assert "X-Amz-Signature" not in repr(vars(link))
        link = link.__cause__ or link.__context__
    assert list(tmp_path.iterdir()) == []


# -- hostile download hosts, through both clients ---------------------------------------


def point_both_at(monkeypatch: pytest.MonkeyPatch, host: Any, url: str | None = None) -> None:
    """Make every URL lookup, of either client, answer with *host*'s URL."""

    def answer(layer: ecr_layers.LayerRef) -> ecr_layers.LayerUrl:
        return ecr_layers.LayerUrl(url or host.url(), layer.layer_digest)

    async def answer_async(self: object, layer: ecr_layers.LayerRef) -> ecr_layers.LayerUrl:
        return answer(layer)

    monkeypatch.setattr(ecr_layers.LayerClient, "lookup_once", lambda self, layer: answer(layer))
    monkeypatch.setattr(AsyncLayerClient, "lookup_once", answer_async)


def test_a_host_that_resets_every_body_ends_within_attempts_alike(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import hostile

    with hostile.serving(hostile.reset_after(1000)) as host:
        point_both_at(monkeypatch, host)
        with pytest.raises(ecr_layers.EndpointUnreachable):
            either.download_layer(REPO, host.digest, tmp_path)
        assert FAST.attempts <= host.requests <= FAST.attempts + 1
    assert list(tmp_path.iterdir()) == []


def test_a_trickle_is_cut_by_the_minimum_rate_alike(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from ecr_layers import _transfer

    from . import hostile

    monkeypatch.setattr(_transfer, "MIN_RATE_WINDOW", 0.5)
    with hostile.serving(hostile.trickle(0.05)) as host:
        point_both_at(monkeypatch, host)
        started = time.monotonic()
        with pytest.raises(ecr_layers.EndpointTimeout) as caught:
            either.download_layer(REPO, host.digest, tmp_path)
        assert host.requests == FAST.attempts  # bytes came, too slowly to count
        assert time.monotonic() - started < 5
    assert "bytes/s" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_hangs_ends_by_the_deadline_alike(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from . import hostile

    policy = ecr_layers.RetryPolicy(attempts=100, wait_initial=0.01, wait_jitter=0, timeout=2)
    for name, value in ecr.env().items():
        monkeypatch.setenv(name, value)
    with hostile.serving(hostile.hang_after(1000)) as host:
        point_both_at(monkeypatch, host)

        async def run_async() -> None:
            async with async_client(ecr, download_retry_policy=policy) as client:
                await client.download_layer(REPO, host.digest, tmp_path)

        def run_sync() -> None:
            with ecr_layers.LayerClient(download_retry_policy=policy) as client:
                client.download_layer(REPO, host.digest, tmp_path)

        for run in (run_sync, lambda: asyncio.run(run_async())):
            started = time.monotonic()
            with pytest.raises(ecr_layers.EndpointTimeout):
                run()
            assert time.monotonic() - started < 4
    assert list(tmp_path.iterdir()) == []


def test_the_loopback_bypass_is_refused_alike(
    either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from . import hostile

    with hostile.serving(hostile.nothing, address="127.0.0.2") as other:
        bypass = f"http://127.0.0.2:{other.port}\\@127.0.0.1/blob?X-Amz-Signature=SECRET"
        point_both_at(monkeypatch, other, url=bypass)
        with pytest.raises(ecr_layers.ConfigurationError) as caught:
            either.download_layer(REPO, other.digest, tmp_path)
        time.sleep(0.3)
        assert other.requests == 0  # nothing reached the other host
    assert "SECRET" not in str(caught.value)
