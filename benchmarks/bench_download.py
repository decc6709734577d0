"""Verified download throughput and memory, against a LocalECR in another process.

Compared in the same run, on the same URL: ecr_layers.download_layer (single stream,
and the default), a plain urllib3 loop that streams, hashes and writes, and
``curl -s URL | tee FILE | sha256sum``.  Then peak memory growth for a layer four
times larger.

Run: python -m benchmarks.bench_download [--mib 256] [--rounds 3]
Targets: ours >= 0.9x the urllib3 loop; memory growth <= 64 MiB at 256 MiB and 1 GiB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from ecr_layers.testing import push_image_via_api

from ._common import child_env, ecr_client, median, server_process

_PRELUDE = """
import hashlib, os, sys, time
import ecr_layers, urllib3, concurrent.futures
client = ecr_layers.LayerClient()
url = client.get_layer_url({repo!r}, {digest!r})
def status(key):
    # VmHWM is this process image's own peak (ru_maxrss is not: it keeps the
    # forking parent's size across exec), and writing 5 to clear_refs resets it.
    text = open("/proc/self/status").read()
    return int(text.split(key + ":")[1].split()[0]) / 1024
def start():
    open("/proc/self/clear_refs", "w").write("5")
    return status("VmRSS")
def rss():
    return status("VmHWM")
"""
OURS = (
    _PRELUDE
    + """
# Warm up pools and imports on a small layer, so the baseline is taken after them.
os.unlink(client.download_layer("bench/small", {small!r}, {dest!r} + ".small"))
base = start()
t = time.perf_counter()
client.download_layer({repo!r}, {digest!r}, {dest!r}, parallel={parallel!r})
print(time.perf_counter() - t, rss() - base)
"""
)
URLLIB3 = (
    _PRELUDE
    + """
pool = urllib3.PoolManager()
base = start()
t = time.perf_counter()
r = pool.request("GET", url.download_url, preload_content=False)
h = hashlib.sha256()
with open({dest!r}, "wb") as f:
    for chunk in r.stream(1024 * 1024):
        h.update(chunk)
        f.write(chunk)
    if {fsync!r}:
        f.flush()
        os.fsync(f.fileno())
assert "sha256:" + h.hexdigest() == {digest!r}
print(time.perf_counter() - t, rss() - base)
"""
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-large", action="store_true", help="skip the 4x memory check")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    data = os.urandom(size)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    ceiling = size / (time.perf_counter() - started) / 2**20
    print(f"sha256 alone, in memory, this CPU: {ceiling:7.0f} MiB/s")

    with server_process() as server, tempfile.TemporaryDirectory() as scratch:
        env = child_env(server)
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [data])
        [small] = push_image_via_api(ecr, "bench/small", [b"warm-up layer"])
        del data
        dest = os.path.join(scratch, "layer")
        results: dict[str, list[tuple[float, float]]] = {}

        def child(name: str, code: str, **extra: object) -> None:
            script = code.format(repo="bench/big", digest=digest, dest=dest, small=small, **extra)
            out = subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            )
            seconds, grew = map(float, out.stdout.split())
            results.setdefault(name, []).append((seconds, grew))
            os.unlink(dest)

        def curl() -> None:
            import ecr_layers

            url = ecr_layers.LayerClient(ecr).get_layer_url("bench/big", digest)
            t = time.perf_counter()
            out = subprocess.run(
                ["bash", "-c", 'curl -s "$URL" | tee "$DEST" | sha256sum'],
                env={**env, "URL": url.download_url, "DEST": dest},
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout.split()[0] == digest[7:]
            results.setdefault("curl | tee | sha256sum", []).append((time.perf_counter() - t, 0.0))
            os.unlink(dest)

        for _ in range(args.rounds):
            child("urllib3 loop", URLLIB3, fsync=False)
            child("urllib3 loop + fsync", URLLIB3, fsync=True)
            child("ecr_layers, one stream", OURS, parallel=1)
            child("ecr_layers, default (auto)", OURS, parallel=None)
            curl()

        report(results, args.mib, args.rounds, ceiling)
        if not args.no_large:
            # Memory for a layer four times larger; throughput is not the point here.
            large = os.urandom(4 * size)
            [big] = push_image_via_api(ecr, "bench/huge", [large])
            del large
            for parallel in (1, None):
                script = OURS.format(
                    repo="bench/huge", digest=big, dest=dest, small=small, parallel=parallel
                )
                out = subprocess.run(
                    [sys.executable, "-c", script],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds, grew = map(float, out.stdout.split())
                os.unlink(dest)
                print(
                    f"{4 * args.mib} MiB layer, parallel={parallel}: "
                    f"{4 * args.mib / seconds:6.0f} MiB/s, {grew:5.1f} MiB peak RSS growth  (<= 64)"
                )


def report(
    results: dict[str, list[tuple[float, float]]], mib: int, rounds: int, ceiling: float
) -> None:
    print(f"\n{mib} MiB layer, median of {rounds} interleaved rounds:")
    speeds = {}
    for name, runs in results.items():
        speeds[name] = mib / median([s for s, _ in runs])
        grew = max(g for _, g in runs)
        memory = f"{grew:6.1f} MiB peak RSS growth" if "curl" not in name else ""
        print(f"  {name:<28} {speeds[name]:7.0f} MiB/s  {memory}")
    one, auto = speeds["ecr_layers, one stream"], speeds["ecr_layers, default (auto)"]
    print(f"  one stream / urllib3 loop:         {one / speeds['urllib3 loop']:.2f}  (>= 0.9)")
    print(f"  default    / urllib3 loop:         {auto / speeds['urllib3 loop']:.2f}  (>= 0.9)")
    print(f"  one stream / urllib3 loop + fsync: {one / speeds['urllib3 loop + fsync']:.2f}")
    print(f"  one stream / curl | tee | sha256sum: {one / speeds['curl | tee | sha256sum']:.2f}")
    print(f"  one stream / sha256 alone in memory: {one / ceiling:.2f}")


if __name__ == "__main__":
    main()
