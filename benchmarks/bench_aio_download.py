"""A verified 256 MiB download: `AsyncLayerClient.download_layer` vs `download_layer`.

Each download in a fresh child process, interleaved in a rotating order, each round
writing a new file (the same durability: verified, fsynced, renamed, directory
fsynced), against one LocalECR in its own process.  Both clients run the same
synchronous engine (the async one in worker threads), so what is measured is the cost
of the asyncio front door.

The run carries its own control: a second, identical synchronous variant.  Its ratio to
the first is the noise floor; an async ratio inside it says nothing either way.  Each
variant's process CPU time (user + system, all threads) over the download is reported
beside its wall-clock time.

Run: python -m benchmarks.bench_aio_download [--rounds 7 --mib 256]
Target: the async download >= 0.95x the synchronous one's throughput (median of the
per-round ratios).  Exit status 1 if missed, in a run of at least 7 rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from ecr_layers.testing import push_image_via_api

from ._common import GIB, MIB, child_env, ecr_client, median, per_round, server_process

TARGET = 0.95
MIN_ROUNDS = 7

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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_aio_download")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="counted rounds (7)")
    parser.add_argument("--mib", type=int, default=256, help="layer size (256)")
    args = parser.parse_args()
    names = list(VARIANTS)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with server_process() as server, tempfile.TemporaryDirectory() as tmp:
        env = child_env(server)
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [os.urandom(args.mib * MIB)])
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
    gib = args.mib * MIB / GIB
    print(f"{args.mib} MiB layer, {args.rounds} counted round(s) after 1 warm-up round")
    print(f"{'':12} {'median':>8} {'MiB/s':>7} {'CPU':>8} {'CPU/GiB':>8}")
    for name in names:
        seconds, cpu_median = median(wall[name]), median(cpu[name])
        print(
            f"{name:>12} {seconds:7.3f}s {args.mib / seconds:7.0f} {cpu_median:7.3f}s"
            f" {cpu_median / gib:7.3f}s"
        )
        print(f"{'':14}per round, wall: {' '.join(f'{t:.3f}' for t in wall[name])}")
        print(f"{'':14}per round, CPU:  {' '.join(f'{t:.3f}' for t in cpu[name])}")
    print("Ratios: median of the per-round ratios [ratio of the medians]")
    # Throughput is bytes over seconds, so its ratio is the sync time over the other's.
    ok = median(per_round(wall["sync"], wall["async"])) >= TARGET
    verdict = f"target >= {TARGET:.2f}  {'PASS' if ok else 'FAIL'}"
    _ratio("throughput, async / sync", wall["sync"], wall["async"], verdict)
    _ratio("control, sync again / sync", wall["sync"], wall["sync again"], "(the noise floor)")
    _ratio("CPU, async / sync", cpu["async"], cpu["sync"])
    _ratio("CPU control, sync again / sync", cpu["sync again"], cpu["sync"])
    if args.rounds < MIN_ROUNDS:
        print(f"SMOKE RUN (fewer than {MIN_ROUNDS} rounds): not a measurement; record nothing.")
        return 0
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _ratio(label: str, numerators: list[float], denominators: list[float], note: str = "") -> None:
    """Print the median of the per-round ratios, and the ratio of the medians."""
    ratio = median(per_round(numerators, denominators))
    of_medians = median(numerators) / median(denominators)
    print(f"  {label:<32} {ratio:5.2f} [{of_medians:4.2f}]  {note}".rstrip())


if __name__ == "__main__":
    sys.exit(main())
