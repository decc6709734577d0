"""Parallel ranged download vs one stream when each connection is capped.

LocalECR (another process) caps every download connection at --cap MiB/s, as a
real object store's per-connection throughput does; the layer is verified either way.

Run: python -m benchmarks.bench_parallel [--mib 128 --cap 16 --connections 4]
Target: >= 3x faster than one stream with 4 connections, memory bounded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from ecr_layers.testing import push_image_via_api

from ._common import child_env, ecr_client, server_process

CHILD = """
import os, time, ecr_layers
def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) / 1024
client = ecr_layers.LayerClient()
os.unlink(client.download_layer("bench/small", {small!r}, {dest!r} + ".small"))
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
t = time.perf_counter()
client.download_layer("bench/big", {digest!r}, {dest!r}, parallel={parallel!r})
print(time.perf_counter() - t, status("VmHWM") - base)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--cap", type=float, default=16.0, help="MiB/s per connection")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    cap = int(args.cap * 1024 * 1024)
    with server_process("--bandwidth", str(cap)) as server, tempfile.TemporaryDirectory() as tmp:
        env = child_env(server)
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [os.urandom(args.mib * 1024 * 1024)])
        [small] = push_image_via_api(ecr, "bench/small", [b"warm-up"])
        dest = os.path.join(tmp, "layer")
        times = {}
        for parallel in (1, args.connections):
            script = CHILD.format(small=small, digest=digest, dest=dest, parallel=parallel)
            out = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            )
            seconds, grew = map(float, out.stdout.split())
            times[parallel] = seconds
            os.unlink(dest)
            print(
                f"parallel={parallel}: {seconds:6.2f} s, {args.mib / seconds:6.1f} MiB/s, "
                f"{grew:5.1f} MiB peak RSS growth (verified)"
            )
    speedup = times[1] / times[args.connections]
    print(f"speed-up with {args.connections} connections at {args.cap} MiB/s each: {speedup:.2f}x")


if __name__ == "__main__":
    main()
