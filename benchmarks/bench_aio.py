"""ecr_layers.aio: concurrent lookups, per-call CPU, and sockets under 1000 concurrent calls.

LocalECR runs in its own process.  Three measurements, each against its baseline in
the same run:

1. 100 lookups at --latency seconds per API call: ``asyncio.gather`` on one
   `AsyncLayerClient` vs a sequential ``await`` loop on the same client
   (median of --rounds interleaved rounds).  Target: >= 10x.
2. Client-process CPU per call, no added latency: `AsyncLayerClient.get_layer_url` vs
   raw aiobotocore ``get_download_url_for_layer`` (retries off), 4 x --rounds x --calls
   calls each, the clients taking turns call by call (each first in turn), beside a
   second raw client's ratio to the first (what the machine alone moves).  The ratios
   of the medians and of the means (which carry the garbage collections each client's
   allocations cause).  Target: <= 1.05x.
3. 1000 concurrent ``get_layer_url`` calls on one client: all succeed, and the sockets
   this process holds (sampled every millisecond) never exceed the pool's size.

Run: python -m benchmarks.bench_aio [--rounds 9 --calls 100 --latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from ecr_layers.testing import push_image_via_api

from ._common import child_env, ecr_client, median, server_process

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


async def _gather_vs_loop(digests: list[str], rounds: int) -> tuple[float, float]:
    from ecr_layers.aio import AsyncLayerClient

    loops, gathers = [], []
    async with AsyncLayerClient() as client:
        await client.get_layer_url("bench/app", digests[0])  # connections, outside the timing
        for _ in range(rounds):
            started = time.perf_counter()
            for digest in digests:
                await client.get_layer_url("bench/app", digest)
            loops.append(time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(client.get_layer_url("bench/app", d) for d in digests))
            gathers.append(time.perf_counter() - started)
    return median(loops), median(gathers)


async def _cpu_per_call(digest: str, calls: int) -> dict[str, list[float]]:
    """Each call's CPU time, for ours, raw aiobotocore and a second raw client (whose
    ratio to the first is what the machine alone moves: no code explains it).

    The clients take turns call by call, each first in turn, so that whatever the
    machine does over a run falls on all three alike.
    """
    from aiobotocore.session import AioSession

    from ecr_layers import BOTOCORE_CONFIG
    from ecr_layers.aio import AsyncLayerClient

    # A botocore Config, which aiobotocore takes as it is (as for AsyncLayerClient).
    config = cast("AioConfig", BOTOCORE_CONFIG)
    async with (
        AsyncLayerClient() as ours,
        AioSession().create_client("ecr", config=config) as raw,
        AioSession().create_client("ecr", config=config) as control,
    ):
        calls_of: dict[str, Callable[[], Awaitable[Any]]] = {
            "ours": lambda: ours.get_layer_url("bench/app", digest),
            "raw": lambda: raw.get_download_url_for_layer(
                repositoryName="bench/app", layerDigest=digest
            ),
            "control": lambda: control.get_download_url_for_layer(
                repositoryName="bench/app", layerDigest=digest
            ),
        }
        names = list(calls_of)
        for _ in range(20):  # connections, caches and the interpreter's warm-up
            for call in calls_of.values():
                await call()
        spent: dict[str, list[float]] = {name: [] for name in names}
        for n in range(calls):
            for name in names[n % 3 :] + names[: n % 3]:
                started = time.process_time()
                await calls_of[name]()
                spent[name].append(time.process_time() - started)
    return spent


async def _thousand(digests: list[str]) -> tuple[int, int, int]:
    from ecr_layers.aio import AsyncLayerClient

    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _sockets())
            await asyncio.sleep(0.001)

    async with AsyncLayerClient() as client:
        before = _sockets()
        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(
            *(client.get_layer_url("bench/app", digests[n % len(digests)]) for n in range(1000))
        )
        done.set()
        await sampler
        ecr = await client._client()
        pool = int(getattr(ecr.meta.config, "max_pool_connections", 10))
    return len(results), peak - before, pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()

    with server_process("--latency", str(args.latency)) as server:
        os.environ.update(child_env(server))
        digests = push_image_via_api(
            ecr_client(server), "bench/app", [os.urandom(64) for _ in range(100)]
        )
        loop, gathered = asyncio.run(_gather_vs_loop(digests, args.rounds))
        print(
            f"100 lookups at {args.latency * 1000:.0f} ms: sequential {loop:.3f} s, "
            f"gather {gathered:.3f} s (median of {args.rounds}): {loop / gathered:.1f}x "
            "(target >= 10x)"
        )
        count, sockets, pool = asyncio.run(_thousand(digests))
        print(
            f"1000 concurrent get_layer_url: {count} results, at most {sockets} sockets "
            f"open at once (pool size {pool})"
        )
    with server_process() as server:
        os.environ.update(child_env(server))
        [digest] = push_image_via_api(ecr_client(server), "bench/app", [b"cpu"])
        calls = args.rounds * args.calls * 4
        spent = asyncio.run(_cpu_per_call(digest, calls))
    raw_median, raw_mean = median(spent["raw"]), statistics.fmean(spent["raw"])
    print(f"CPU per call, {calls} calls each, the clients taking turns call by call:")
    for name, label in (("ours", "AsyncLayerClient"), ("control", "a second raw client")):
        print(
            f"  {label}: median {median(spent[name]) * 1e6:.1f} us, "
            f"{median(spent[name]) / raw_median:.3f}x raw aiobotocore's "
            f"{raw_median * 1e6:.1f} us; mean {statistics.fmean(spent[name]) / raw_mean:.3f}x"
        )
    print("  target: AsyncLayerClient <= 1.05x; the second raw client shows the noise floor")


if __name__ == "__main__":
    main()
