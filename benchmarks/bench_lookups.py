"""Concurrent URL lookups vs a sequential loop, with 20 ms of latency per call.

Run: python -m benchmarks.bench_lookups [--digests 100 --latency 0.02]
Target: get_layer_urls >= 8x faster than the loop for 100 digests.
"""

from __future__ import annotations

import argparse
import os
import time

import ecr_layers
from ecr_layers.testing import push_image_via_api

from ._common import ecr_client, server_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--digests", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_process("--latency", str(args.latency)) as server:
        ecr = ecr_client(server)
        layers = [os.urandom(64) for _ in range(args.digests)]
        digests = push_image_via_api(ecr, "bench/many", layers)
        client = ecr_layers.LayerClient(ecr)
        client.get_layer_urls("bench/many", digests[:16])  # open the pool's connections
        best_loop = best_pool = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            for digest in digests:
                client.get_layer_url("bench/many", digest)
            best_loop = min(best_loop, time.perf_counter() - t)
            t = time.perf_counter()
            results = client.get_layer_urls("bench/many", digests)
            best_pool = min(best_pool, time.perf_counter() - t)
            assert all(isinstance(r, ecr_layers.LayerUrl) for r in results.values())
    print(f"sequential loop : {best_loop * 1000:7.0f} ms for {args.digests} digests")
    print(f"get_layer_urls  : {best_pool * 1000:7.0f} ms (16 workers)")
    print(f"speed-up        : {best_loop / best_pool:.1f}x   target >= 8")


if __name__ == "__main__":
    main()
