"""How long a cancelled async download takes to end, and what it leaves behind.

An `AsyncLayerClient.download_layer` of a layer served at a capped rate is cancelled once
its first 256 KiB have arrived; the time from ``task.cancel()`` to the task's end is
measured, and after each round the destination directory, the client's threads still
running a transfer and the connections of its download pool are counted.

Run: python -m benchmarks.bench_aio_cancel [--rounds 9]
Target: every round ends within 1.5 s, with no file, no transfer thread, no connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

from ecr_layers.aio import AsyncLayerClient
from ecr_layers.testing import LocalECR

TARGET = 1.5


async def _round(ecr: LocalECR, digest: str, directory: Path) -> tuple[float, int, int, int]:
    moving = threading.Event()

    def progress(done: int, _total: int | None) -> None:
        if done >= 256 * 1024:
            moving.set()

    async with AsyncLayerClient(
        endpoint_url=ecr.endpoint_url, region_name=ecr.region_name
    ) as client:
        task = asyncio.ensure_future(
            client.download_layer("bench/big", digest, directory, progress=progress)
        )
        await asyncio.to_thread(moving.wait, 30)
        started = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        elapsed = time.perf_counter() - started
        pools = client._http.pools if client._http is not None else {}
        connections = 0
        for key in list(pools.keys()):
            queue = pools[key].pool
            idle = list(queue.queue) if queue is not None else []
            connections += sum(1 for c in idle if c is not None and c.sock is not None)
            connections += (queue.maxsize if queue is not None else 0) - len(idle)
        workers = sum(1 for t in threading.enumerate() if t.name.startswith("ecr-layers-hash"))
        files = len(list(directory.iterdir()))
    return elapsed, files, workers, connections


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with LocalECR() as ecr, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ecr.env())
        [digest] = ecr.push_image("bench/big", [os.urandom(16 * 1024 * 1024)])
        ecr.faults.bandwidth = 2 * 1024 * 1024  # 8 s for the whole layer
        results = []
        for n in range(args.rounds):
            directory = Path(tmp, str(n))
            directory.mkdir()
            results.append(asyncio.run(_round(ecr, digest, directory)))
    times = sorted(r[0] for r in results)
    left = [r[1:] for r in results]
    print(f"cancel to end: median {times[len(times) // 2]:.3f} s, max {times[-1]:.3f} s")
    print(f"left behind (files, sink threads, connections) per round: {left}")
    ok = times[-1] <= TARGET and all(r == (0, 0, 0) for r in left)
    print(f"target: every round <= {TARGET} s and nothing left: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
