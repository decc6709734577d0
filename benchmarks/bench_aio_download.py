"""A verified 256 MiB download: `AsyncLayerClient.download_layer` vs `download_layer`.

Both in fresh child processes, interleaved, each round writing a new file (the same
durability: verified, fsynced, renamed, directory fsynced), against one LocalECR in
its own process.

Run: python -m benchmarks.bench_aio_download [--rounds 9 --mib 256]
Target: the async download >= 0.9x the synchronous one's throughput.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from ecr_layers.testing import push_image_via_api

from ._common import child_env, ecr_client, median, server_process

SYNC = """
import os, time, ecr_layers
client = ecr_layers.LayerClient()
os.unlink(client.download_layer("bench/small", {small!r}, {dest!r} + ".warm"))
t = time.perf_counter()
client.download_layer("bench/big", {digest!r}, {dest!r}, parallel=1)
print(time.perf_counter() - t)
"""

ASYNC = """
import asyncio, os, time
from ecr_layers.aio import AsyncLayerClient
async def main():
    async with AsyncLayerClient() as client:
        os.unlink(await client.download_layer("bench/small", {small!r}, {dest!r} + ".warm"))
        t = time.perf_counter()
        await client.download_layer("bench/big", {digest!r}, {dest!r}, parallel=1)
        print(time.perf_counter() - t)
asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with server_process() as server, tempfile.TemporaryDirectory() as tmp:
        env = child_env(server)
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [os.urandom(args.mib * 1024 * 1024)])
        [small] = push_image_via_api(ecr, "bench/small", [b"warm-up"])
        times: dict[str, list[float]] = {"sync": [], "async": []}
        for n in range(-1, args.rounds):  # round -1: a warm-up, not counted
            order = ("sync", "async") if n % 2 == 0 else ("async", "sync")
            for which in order:
                dest = os.path.join(tmp, f"{which}-{n}")
                script = (SYNC if which == "sync" else ASYNC).format(
                    small=small, digest=digest, dest=dest
                )
                out = subprocess.run(
                    [sys.executable, "-c", script], env=env, capture_output=True, text=True,
                    check=True,
                )  # fmt: skip
                if n >= 0:
                    times[which].append(float(out.stdout.split()[-1]))
                os.unlink(dest)
    for which in ("sync", "async"):
        seconds = median(times[which])
        print(f"{which:>5}: median {seconds:.3f} s, {args.mib / seconds:7.1f} MiB/s")
    ratio = median(times["sync"]) / median(times["async"])
    print(f"async / sync throughput: {ratio:.2f}x (target >= 0.9x), {args.rounds} rounds")
    print(f"  per round, sync: {' '.join(f'{t:.3f}' for t in times['sync'])}")
    print(f"  per round, async: {' '.join(f'{t:.3f}' for t in times['async'])}")


if __name__ == "__main__":
    main()
