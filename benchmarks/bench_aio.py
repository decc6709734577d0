"""ecr_layers.aio: concurrent lookups, per-call CPU, and sockets under 1000 concurrent calls.

LocalECR runs in its own process.  Three measurements, each against its baseline in
the same run:

1. 100 lookups at --latency seconds per API call: ``asyncio.gather`` on one
   `AsyncLayerClient` vs a sequential ``await`` loop on the same client
   (median of --rounds interleaved rounds).  Target: >= 10x.
2. Client-process CPU per call, no added latency: `AsyncLayerClient.get_layer_url` vs
   raw aiobotocore ``get_download_url_for_layer`` (retries off): the median of
   per-round ratios over 4 x --rounds + 1 rounds of --calls sequential calls, each
   client first in turn, beside a second raw client's ratio to the first (what the
   machine alone moves).  Target: <= 1.05x.
3. 1000 concurrent ``get_layer_url`` calls on one client: all succeed, and the sockets
   this process holds (sampled every millisecond) never exceed the pool's size.

Run: python -m benchmarks.bench_aio [--rounds 9 --calls 100 --latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


async def _cpu_per_call(digest: str, rounds: int, calls: int) -> tuple[float, float, float]:
    """Median per-call CPU of ours, and the medians of per-round ratios: ours / raw, and
    a second raw client / raw (the machine's noise floor, which no code explains)."""
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
        for call in calls_of.values():
            await call()  # connections, outside the timing
        spent: dict[str, list[float]] = {name: [] for name in calls_of}
        names = list(calls_of)
        for n in range(rounds):
            for name in names[n % 3 :] + names[: n % 3]:  # each goes first in turn
                call = calls_of[name]
                started = time.process_time()
                for _ in range(calls):
                    await call()
                spent[name].append((time.process_time() - started) / calls)
    ratios = [o / r for o, r in zip(spent["ours"], spent["raw"], strict=True)]
    noise = [c / r for c, r in zip(spent["control"], spent["raw"], strict=True)]
    return median(spent["ours"]), median(ratios), median(noise)


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
        rounds = args.rounds * 4 + 1
        ours, ratio, noise = asyncio.run(_cpu_per_call(digest, rounds, args.calls))
        print(
            f"CPU per call: AsyncLayerClient {ours * 1e6:.1f} us; vs raw aiobotocore "
            f"{ratio:.3f}x (target <= 1.05); a second raw client vs the first {noise:.3f}x "
            f"(the noise floor); medians of {rounds} rounds of {args.calls} calls"
        )


if __name__ == "__main__":
    main()
