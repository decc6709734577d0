"""pull_image vs a loop of download_layer over the same image, on capped connections.

LocalECR (another process) adds --latency seconds to every API call and caps each
download connection at --cap MiB/s, as a real registry's API and object store do.
The image has --layers layers of --mib MiB in all (real gzip'd tars of random bytes).
Both variants start from a new, empty directory each round, verify every blob and
fsync it (same durability), and run in fresh child processes, interleaved.

Then, on a LocalECR in this process (so that its counts can be read), the requests
one pull makes, and those of a second pull of the same image.

Run: python -m benchmarks.bench_pull [--rounds 9 --layers 8 --mib 64 --cap 16 --latency 0.02]
Targets: pull_image >= 3x the loop; API requests per pull = BatchGetImage calls +
one GetDownloadUrlForLayer per blob fetched; a second pull makes no blob request;
peak memory growth <= 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from ecr_layers.testing import Layer, LocalECR, push_image_via_api, random_layer

from ._common import child_env, ecr_client, median, server_process

CHILD = """
import os, sys, time, ecr_layers
def status(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) / 1024
client = ecr_layers.LayerClient()
client.get_image("bench/warm", "latest")  # imports and connections, outside the timing
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
dest = {dest!r}
t = time.perf_counter()
if {variant!r} == "pull":
    client.pull_image("bench/img", "v1", dest, max_parallel={parallel})
else:
    os.mkdir(dest)
    image = client.get_image("bench/img", "v1")
    for layer in image.layers:
        client.download_layer("bench/img", layer.digest, dest)
print(time.perf_counter() - t, status("VmHWM") - base)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--mib", type=int, default=64, help="the image's size, all layers")
    parser.add_argument("--cap", type=float, default=16.0, help="MiB/s per download connection")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per API call")
    parser.add_argument("--parallel", type=int, default=4, help="pull_image's max_parallel")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024 // args.layers
    layers = [random_layer(size, seed=n) for n in range(args.layers)]
    cap = int(args.cap * 1024 * 1024)

    options = ("--bandwidth", str(cap), "--latency", str(args.latency))
    with server_process(*options) as server, tempfile.TemporaryDirectory() as tmp:
        env = child_env(server)
        ecr = ecr_client(server)
        push_image_via_api(ecr, "bench/img", layers, tag="v1")
        push_image_via_api(ecr, "bench/warm", [b"warm-up"])
        times: dict[str, list[float]] = {"loop": [], "pull": []}
        peaks: dict[str, list[float]] = {"loop": [], "pull": []}
        for n in range(args.rounds):
            # Alternating which goes first, so that neither always runs on a warmer machine.
            order = ("loop", "pull") if n % 2 == 0 else ("pull", "loop")
            for variant in order:
                dest = os.path.join(tmp, f"{variant}-{n}")
                script = CHILD.format(dest=dest, variant=variant, parallel=args.parallel)
                out = subprocess.run(
                    [sys.executable, "-c", script],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds, grew = map(float, out.stdout.split())
                times[variant].append(seconds)
                peaks[variant].append(grew)
                subprocess.run(["rm", "-rf", dest], check=True)
        for variant in ("loop", "pull"):
            t = median(times[variant])
            print(
                f"{variant:>4}: median {t:6.2f} s ({args.mib / t:6.1f} MiB/s) over {args.rounds} "
                f"rounds, peak RSS growth {max(peaks[variant]):5.1f} MiB (max of rounds)"
            )
    ratio = median(times["loop"]) / median(times["pull"])
    print(
        f"pull_image vs a loop of download_layer: {ratio:.2f}x "
        f"({args.layers} layers, {args.mib} MiB, {args.cap} MiB/s per connection, "
        f"{args.latency * 1000:.0f} ms per API call, max_parallel={args.parallel})"
    )
    _count_requests(layers, args.latency)


def _count_requests(layers: list[Layer], latency: float) -> None:
    """One pull, then another, counted on a LocalECR in this process."""
    with LocalECR() as ecr, tempfile.TemporaryDirectory() as tmp, ecr.client() as client:
        ecr.faults.add_latency(latency)
        ecr.push_layers_image("bench/img", "v1", layers)
        for attempt in ("first", "second"):
            ecr.stats.reset()
            image = client.pull_image("bench/img", "v1", os.path.join(tmp, "layout"))
            calls = ecr.stats.count("BatchGetImage")
            lookups = ecr.stats.count("GetDownloadUrlForLayer")
            blobs = ecr.stats.blob_count()
            print(
                f"{attempt} pull: {calls} BatchGetImage + {lookups} GetDownloadUrlForLayer "
                f"= {ecr.stats.count()} API requests; {blobs} blob requests "
                f"(the image has {1 + len(image.layers)} blobs: config and layers)"
            )


if __name__ == "__main__":
    main()
