"""Cold start: a whole process that imports the library and makes one call.

ecr_layers (import, default client, one get_layer_url) vs boto3 (import boto3,
boto3.client("ecr"), one get_download_url_for_layer), same endpoint, interleaved.

Run: python -m benchmarks.bench_cold [--rounds 21]   (compiles ecr_layers' bytecode first)
Target: median wall ratio <= 1.05, and peak memory no higher.
"""

from __future__ import annotations

import argparse
import compileall
import pathlib
import subprocess
import sys
import time

import ecr_layers
from ecr_layers.testing import push_image_via_api

from ._common import child_env, ecr_client, median, server_process

# VmHWM: this process image's own peak RSS in KiB (ru_maxrss would include the
# forking parent's size, which survives exec).
_REPORT = "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
OURS = "import ecr_layers\necr_layers.get_layer_url('bench/app', {digest!r})\n" + _REPORT
BOTO3 = (
    "import boto3\n"
    "boto3.client('ecr').get_download_url_for_layer("
    "repositoryName='bench/app', layerDigest={digest!r})\n" + _REPORT
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    # Both sides start from bytecode, as pip leaves an installed wheel: boto3's and
    # botocore's was compiled at install, and an editable checkout's is otherwise
    # compiled again by every child where PYTHONDONTWRITEBYTECODE is set.
    compileall.compile_dir(pathlib.Path(ecr_layers.__file__).parent, quiet=1)
    with server_process() as server:
        env = child_env(server)
        client = ecr_client(server)
        [digest] = push_image_via_api(client, "bench/app", [b"layer"])
        walls: dict[str, list[float]] = {"ecr_layers": [], "boto3": []}
        rss: dict[str, list[float]] = {"ecr_layers": [], "boto3": []}
        ratios = []
        for _ in range(args.rounds):
            for name, code in (("ecr_layers", OURS), ("boto3", BOTO3)):
                started = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-c", code.format(digest=digest)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                walls[name].append(time.perf_counter() - started)
                rss[name].append(int(out.stdout.split()[-1]) / 1024)
            ratios.append(walls["ecr_layers"][-1] / walls["boto3"][-1])
    for name, times in walls.items():
        print(
            f"{name:<11}: {median(times) * 1000:6.1f} ms wall, "
            f"{median(rss[name]):6.1f} MiB peak RSS (median of {args.rounds})"
        )
    print(f"wall ratio (median of per-round ratios): {median(ratios):.3f}   target <= 1.05")
    print(f"peak RSS ratio: {median(rss['ecr_layers']) / median(rss['boto3']):.3f}   target <= 1.0")


if __name__ == "__main__":
    main()
