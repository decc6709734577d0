"""A verified 256 MiB download: `AsyncLayerClient.download_layer` vs `download_layer`.

Each download in a fresh child process, interleaved in a rotating order, each round
writing a new file (the same durability: verified, fsynced, renamed, directory
fsynced), against one LocalECR in its own process.

This machine's disk and page cache move a single download's time by 2x from one round
to the next, so the run carries its own control: a second, identical synchronous
variant.  Its ratio to the first is the noise floor; an async ratio inside it says
nothing either way.  Each variant's CPU time (all its threads) during the download is
printed too: it moves far less than the wall-clock time.

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

# Prints the download's wall-clock seconds and the process's CPU seconds over it.
SYNC = """
import os, resource, time, ecr_layers
client = ecr_layers.LayerClient()
os.unlink(client.download_layer("bench/small", {small!r}, {dest!r} + ".warm"))
cpu, t = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), time.perf_counter()
client.download_layer("bench/big", {digest!r}, {dest!r}, parallel=1)
print(time.perf_counter() - t, sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu)
"""

ASYNC = """
import asyncio, os, resource, time
from ecr_layers.aio import AsyncLayerClient
async def main():
    async with AsyncLayerClient() as client:
        os.unlink(await client.download_layer("bench/small", {small!r}, {dest!r} + ".warm"))
        cpu, t = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), time.perf_counter()
        await client.download_layer("bench/big", {digest!r}, {dest!r}, parallel=1)
        print(time.perf_counter() - t, sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu)
asyncio.run(main())
"""

VARIANTS = {"sync": SYNC, "sync again": SYNC, "async": ASYNC}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    names = list(VARIANTS)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with server_process() as server, tempfile.TemporaryDirectory() as tmp:
        env = child_env(server)
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [os.urandom(args.mib * 1024 * 1024)])
        [small] = push_image_via_api(ecr, "bench/small", [b"warm-up"])
        for n in range(-1, args.rounds):  # round -1: a warm-up, not counted
            shift = n % len(names)
            for name in names[shift:] + names[:shift]:
                dest = os.path.join(tmp, f"{name}-{n}".replace(" ", "-"))
                script = VARIANTS[name].format(small=small, digest=digest, dest=dest)
                out = subprocess.run(
                    [sys.executable, "-c", script], env=env, capture_output=True, text=True,
                    check=True,
                )  # fmt: skip
                if n >= 0:
                    seconds, cpu_seconds = map(float, out.stdout.split()[-2:])
                    wall[name].append(seconds)
                    cpu[name].append(cpu_seconds)
                os.unlink(dest)
    for name in names:
        seconds = median(wall[name])
        print(
            f"{name:>10}: median {seconds:.3f} s, {args.mib / seconds:7.1f} MiB/s,"
            f" CPU {median(cpu[name]):.3f} s"
        )
        print(f"{'':>12}per round: {' '.join(f'{t:.3f}' for t in wall[name])}")
    sync = median(wall["sync"])
    print(
        f"async / sync throughput: {sync / median(wall['async']):.2f}x (target >= 0.9x);"
        f" control, sync again / sync: {sync / median(wall['sync again']):.2f}x"
    )
    paired = [s / a for s, a in zip(wall["sync"], wall["async"], strict=True)]
    print(f"  median of per-round ratios: {median(paired):.2f}x; {args.rounds} rounds")
    print(f"  CPU, async / sync: {median(cpu['async']) / median(cpu['sync']):.2f}x")


if __name__ == "__main__":
    main()
