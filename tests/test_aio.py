"""ecr_layers.aio: the same contract as the synchronous client, checked through both.

Where the behaviour is the same, one test runs against `LayerClient` and
`AsyncLayerClient` alike (``either``, from tests/imaging.py); the image, download and
pull modules run theirs that way.  Here: what has no other home, then what only
asyncio has.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pathlib
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import ecr_layers
from ecr_layers.aio import AsyncLayerClient
from ecr_layers.testing import LocalECR, tar_layer

from .imaging import FAST, REPO, Synchronous

UNKNOWN = "sha256:" + "0" * 64


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
    with pytest.raises(ecr_layers.InvalidParameter):
        AsyncLayerClient(region_name=5)  # type: ignore[arg-type]
    with pytest.raises(ecr_layers.InvalidParameter):
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


def open_connections(client: AsyncLayerClient) -> int:
    """Connections of the client's download pool that are open or checked out."""
    pools = client._http.pools if client._http is not None else {}
    count = 0
    for key in list(pools.keys()):
        pool = pools[key]
        assert pool.pool is not None
        idle = list(pool.pool.queue)
        count += sum(1 for conn in idle if conn is not None and conn.sock is not None)
        count += pool.pool.maxsize - len(idle)  # checked out, not yet given back
    return count


def test_cancelling_a_download_leaves_nothing(ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    import time

    data = os.urandom(4 * 1024 * 1024)
    [digest] = ecr.push_image(REPO, [data])
    ecr.faults.bandwidth = 512 * 1024  # 8 s: long enough to be cancelled

    moving = threading.Event()

    def progress(done: int, _total: int | None) -> None:
        if done >= 64 * 1024:
            moving.set()

    async def main() -> None:
        async with async_client(ecr) as client:
            task = asyncio.ensure_future(
                client.download_layer(REPO, digest, tmp_path, progress=progress)
            )
            await asyncio.to_thread(moving.wait, 10)  # mid-transfer
            assert moving.is_set()
            assert not task.done()
            assert open_connections(client) == 1
            cancelled = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Within about a second (1.5 s promised; 3x that for a loaded machine).
            assert time.monotonic() - cancelled < 4.5
            # No connection is left open, and none went back to the pool half-read.
            assert open_connections(client) == 0
            assert not client._active  # and no transfer is still running

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        asyncio.run(main())
    assert list(tmp_path.iterdir()) == []
    gc.collect()


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


def slowed(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    when: Callable[..., bool] = lambda *args: True,
) -> threading.Event:
    """Make *owner.name* (run in a worker thread) wait, when *when* says so of its
    arguments, until the transfer is stopped; return the event set as it starts
    waiting, for a test to cancel the task awaiting it at that moment.

    The thread goes on once the cancellation has reached it, and meets the stop in
    the step that follows: the moment each test is about.
    """
    from ecr_layers.aio import _worker

    entered = threading.Event()
    stopped = threading.Event()
    real = getattr(owner, name)
    real_stop = _worker.Worker.stop

    def stop(self: _worker.Worker) -> None:
        real_stop(self)
        stopped.set()

    def slow(*args: Any, **kwargs: Any) -> Any:
        if not entered.is_set() and when(*args, **kwargs):
            entered.set()
            if not stopped.wait(30):
                raise AssertionError("the cancellation never stopped the transfer")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, slow)
    monkeypatch.setattr(_worker.Worker, "stop", stop)
    return entered


def cancel_on(ecr: LocalECR, entered: threading.Event, work: Awaitable[Any]) -> None:
    """Run *work*, and cancel it once *entered* is set; what it leaked is collected after,
    with the warnings that brings."""

    async def main() -> None:
        task = asyncio.ensure_future(work)
        while not entered.is_set() and not task.done():
            await asyncio.sleep(0.005)
        if not entered.is_set():
            await task
            pytest.fail("the step to cancel in was never reached")
        task.cancel()
        # The task ends only once its worker thread has: nothing is left to wait for.
        with pytest.raises(asyncio.CancelledError):
            await task

    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        # An unclosed file that the bug leaks would warn when collected, after the test.
        warnings.simplefilter("ignore", ResourceWarning)
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        asyncio.run(main())
        gc.collect()


def test_a_cancellation_is_a_cancellation_even_with_the_disk_full(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills as the task is cancelled: the caller sees the CancelledError it asked
    for (asyncio.timeout and TaskGroup rely on it), not the write's error, and the
    temporary file is gone."""
    import errno

    from ecr_layers import _sink

    writing, cancelled = threading.Event(), threading.Event()

    def disk_full(self: object, view: memoryview) -> None:
        writing.set()
        # The write fails only once the task has been cancelled, whatever the timing.
        cancelled.wait(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_sink.Sink, "_write", disk_full)
    [digest] = ecr.push_image(REPO, [os.urandom(8 * 1024 * 1024)])
    ecr.faults.bandwidth = 3 * 1024 * 1024  # bytes/s: the body is still arriving

    async def main() -> None:
        async with async_client(ecr) as client:
            task = asyncio.ensure_future(client.download_layer(REPO, digest, tmp_path, parallel=1))
            await asyncio.to_thread(writing.wait, 10)
            assert writing.is_set(), "the disk-full write never ran"
            task.cancel()
            cancelled.set()
            with pytest.raises(asyncio.CancelledError):
                await task

    for name, value in ecr.env().items():
        monkeypatch.setenv(name, value)
    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


def test_a_download_cancelled_as_its_file_opens_leaves_nothing(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_layers import _download

    [digest] = ecr.push_image(REPO, [os.urandom(1000)])
    entered = slowed(monkeypatch, _download, "Sink")
    client = async_client(ecr)

    async def download() -> None:
        async with client:
            await client.download_layer(REPO, digest, tmp_path)

    cancel_on(ecr, entered, download())
    assert list(tmp_path.iterdir()) == []


def test_a_pull_cancelled_as_a_blob_commits_leaves_nothing_staged(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_layers import _landing

    from .test_pull import staged

    layer = tar_layer({"a": b"a"})
    ecr.push_layers_image(REPO, "v1", [layer])
    layout = tmp_path / "layout"
    # The layer's download, as it commits to staging (the manifest is staged too).
    entered = slowed(
        monkeypatch,
        _landing.Landing,
        "commit",
        when=lambda landing: landing.target.name.startswith(layer.digest.replace(":", "-")),
    )
    client = async_client(ecr)

    async def pull() -> None:
        async with client:
            await client.pull_image(REPO, "v1", layout)

    cancel_on(ecr, entered, pull())
    assert not (layout / "index.json").exists()
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


def test_get_config_looks_the_image_up_on_the_loop_holding_no_worker(ecr: LocalECR) -> None:
    # A lookup sent from a worker holds one of the client's 16 threads for its round
    # trips: 48 get_config calls at once on a slow API took half as long again.
    ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    seen: list[tuple[bool, int]] = []

    lookup = AsyncLayerClient.get_image

    async def get_image(self: AsyncLayerClient, *args: Any, **kwargs: Any) -> Any:
        on_loop = threading.current_thread() is threading.main_thread()
        seen.append((on_loop, len(self._active)))
        return await lookup(self, *args, **kwargs)

    async def main() -> dict[str, Any]:
        async with async_client(ecr) as client:
            return await client.get_config(REPO, "v1")

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ecr.env().items():
            patch.setenv(name, value)
        patch.setattr(AsyncLayerClient, "get_image", get_image)
        config = asyncio.run(main())
    assert config["rootfs"]["type"] == "layers"
    assert seen == [(True, 0)]  # once, on the loop's thread, with no transfer under way


def test_cancelling_a_transfer_queued_behind_busy_workers_ends_at_once(ecr: LocalECR) -> None:
    # Every worker busy: a cancelled transfer still in the queue must not wait for one to
    # come free (it waited for as long as the busiest transfer took), nor run after.
    from ecr_layers.aio._client import _WORKERS

    release, running, ran = threading.Event(), [], []

    def busy(_worker: object) -> None:
        running.append(1)
        release.wait(30)

    async def main() -> float:
        async with async_client(ecr) as client:
            tasks = [asyncio.create_task(client._transfer(busy)) for _ in range(_WORKERS)]
            deadline = asyncio.get_running_loop().time() + 10
            while len(running) < _WORKERS:  # poll: every worker is taken
                assert asyncio.get_running_loop().time() < deadline, running
                await asyncio.sleep(0.01)
            queued = asyncio.create_task(client._transfer(lambda _worker: ran.append(1)))
            await asyncio.sleep(0.05)  # a chosen moment: it is submitted, and waits
            started = time.monotonic()
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            elapsed = time.monotonic() - started
            release.set()
            await asyncio.gather(*tasks)
        return elapsed

    elapsed = asyncio.run(main())
    assert elapsed < 0.5, elapsed  # before: until a busy transfer ended (30 s here)
    assert ran == []
