"""Per-call client CPU: ecr_layers.get_layer_url vs raw botocore, same endpoint, same run.

Run: python -m benchmarks.bench_call [--rounds 15 --calls 200]
Target: median ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import time

import ecr_layers
from ecr_layers.testing import push_image_via_api

from ._common import ecr_client, median, server_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with server_process() as server:
        os.environ.update(server.env)
        raw = ecr_client(server)
        [digest] = push_image_via_api(raw, "bench/app", [b"layer"])
        ours = ecr_layers.LayerClient(endpoint_url=server.endpoint_url)

        def run_ours() -> None:
            ours.get_layer_url("bench/app", digest)

        def run_raw() -> None:
            raw.get_download_url_for_layer(repositoryName="bench/app", layerDigest=digest)

        for fn in (run_ours, run_raw):  # warm up connections and caches
            for _ in range(50):
                fn()
        ratios, ours_us, raw_us = [], [], []
        for _ in range(args.rounds):
            # Interleaved, so drift on a shared machine hits both sides alike.
            o = cpu(run_ours, args.calls)
            r = cpu(run_raw, args.calls)
            ratios.append(o / r)
            ours_us.append(o / args.calls * 1e6)
            raw_us.append(r / args.calls * 1e6)
    print(f"raw botocore      : {median(raw_us):7.1f} us CPU per call (median of {args.rounds})")
    print(f"ecr_layers        : {median(ours_us):7.1f} us CPU per call")
    print(f"ratio (median)    : {median(ratios):.3f}   target <= 1.05")


def cpu(fn: object, calls: int) -> float:
    assert callable(fn)
    started = time.process_time()
    for _ in range(calls):
        fn()
    return time.process_time() - started


if __name__ == "__main__":
    main()
