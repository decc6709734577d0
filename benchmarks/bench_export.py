"""export_rootfs vs what a user would do instead: pull_image, then umoci unpack --rootless.

The image: 3 layers, --files files in all (about --mib MiB unpacked, random bytes, gzip
level 1), the second layer whiting out some of the first's files.  Both variants fetch
it from the same LocalECR (in this process) into a new directory each round, and the
rounds are interleaved; the figure is the median of --rounds.

Run: python -m benchmarks.bench_export [--rounds 5 --files 20000 --mib 200]
Target: export_rootfs <= 1.5x pull_image + umoci unpack --rootless.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import random
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time

from ecr_layers.testing import Layer, LocalECR


def build_layer(names: list[str], size: int, whiteouts: list[str], seed: int) -> Layer:
    raw = io.BytesIO()
    rng = random.Random(seed)
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            # Incompressible, as most of a real image's bytes are once gzip'd.
            data = rng.randbytes(size)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name in whiteouts:
            head, base = os.path.split(name)
            tar.addfile(tarfile.TarInfo(os.path.join(head, ".wh." + base)))
    tar_bytes = raw.getvalue()
    data = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return Layer(data, digest, diff_id, tuple(names))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    umoci = shutil.which("umoci")
    if umoci is None:
        raise SystemExit("umoci is not installed (apt-get install umoci)")
    size = args.mib * 1024 * 1024 // args.files
    split = [
        args.files // 2,
        args.files * 3 // 10,
        args.files - args.files // 2 - args.files * 3 // 10,
    ]
    layers, start = [], 0
    for number, count in enumerate(split):
        names = [f"d{number}/{i // 100}/f{i}" for i in range(start, start + count)]
        # The second layer whites out a hundred of the first's files.
        gone = [f"d0/{i // 100}/f{i}" for i in range(100)] if number == 1 else []
        layers.append(build_layer(names, size, gone, number))
        start += count
    print(
        f"image: {len(layers)} layers, {args.files} files, "
        f"{sum(len(layer.data) for layer in layers) / 2**20:.0f} MiB compressed"
    )
    times: dict[str, list[float]] = {"export_rootfs": [], "pull_image + umoci": []}
    with LocalECR() as ecr, ecr.client() as client:
        ecr.push_layers_image("bench/img", "v1", layers)
        client.get_image("bench/img", "v1")  # connections and imports, outside the timing
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as work:
                t = time.perf_counter()
                client.export_rootfs("bench/img", "v1", os.path.join(work, "root"))
                times["export_rootfs"].append(time.perf_counter() - t)
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as work:
                t = time.perf_counter()
                client.pull_image("bench/img", "v1", os.path.join(work, "layout"))
                subprocess.run(
                    [umoci, "unpack", "--rootless", "--image", f"{work}/layout:v1", f"{work}/b"],
                    check=True,
                    capture_output=True,
                )
                times["pull_image + umoci"].append(time.perf_counter() - t)
    for name, values in times.items():
        each = ", ".join(f"{value:.2f}" for value in values)
        print(f"{name:<20} median {statistics.median(values):6.2f} s  ({each})")
    ratio = statistics.median(times["export_rootfs"]) / statistics.median(
        times["pull_image + umoci"]
    )
    print(f"export_rootfs / (pull_image + umoci unpack) = {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
