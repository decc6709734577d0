"""Verified, durable downloads against plain urllib3 loops, from a LocalECR in another process.

Every variant runs in a fresh process, writes a new file (a name never used before,
opened with ``x``) and starts under the same conditions: the same warm-up request, then
a page cache touched as far as the layer's size (see `_prefault`).  Rounds interleave
the variants, the order rotated by one each round; after a warm-up round that is not
counted, the median of each variant is reported.  A round in which another process took
over a tenth of the CPU during any run is discarded and run again (at most 3x the rounds).

Baselines, the targets' reference; each does strictly less work than the candidates:
  urllib3 loop                 stream with urllib3 in 1 MiB reads, write; no hash, no fsync
  urllib3 loop + fsync         the same, plus one fsync at the end
Candidates, which verify the digest and land the file durably (fsync, rename, fsync dir):
  download_layer(parallel=1), and download_layer() with its default
References, reported but not judged:
  urllib3 loop + sha256        the loop hashing as it writes (the old script's "plain loop")
  urllib3 loop, verified + durable   the candidates' work written plainly: sha256, fsync,
                               digest check, rename, fsync of the directory
  sha256 alone, in memory      a ceiling that no verified download can beat

Run: python -m benchmarks.bench_download [--size-mib 256] [--rounds 9]
     python -m benchmarks.bench_download --quick   # a smoke run: works, proves nothing
Targets: download_layer >= 1.2x each baseline (median of per-round throughput ratios);
one stream's peak RSS growth <= 16 MiB.
Exit status: 0 all targets met; 1 a target missed; 3 the run is a machine artefact and
must be rerun (a variant doing strictly more work came out faster, a download beat the
sha256 ceiling, fewer than --rounds quiet rounds, or CPU steal over 5%).
A smoke run (--quick, or fewer than 9 rounds) exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ._common import child_env, ecr_client, median, server_process

if TYPE_CHECKING:
    import urllib3

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.2
TARGET_GROWTH_MIB = 16.0
LARGE_GROWTH_MIB = 64.0
MIN_ROUNDS = 9
# Beyond these, the machine is not quiet: a round is run again, a run is not recorded.
MAX_OTHERS = 0.10
MAX_STEAL = 0.05
EXIT_FAIL = 1
EXIT_ARTEFACT = 3
CHILD_TIMEOUT = 600.0

PLAIN = "urllib3 loop"
FSYNC = "urllib3 loop + fsync"
HASH = "urllib3 loop + sha256"
SAME_WORK = "urllib3 loop, verified + durable"
ONE = "download_layer(parallel=1)"
AUTO = "download_layer() default"
CEILING = "sha256 alone, in memory"
VARIANTS = (PLAIN, FSYNC, HASH, SAME_WORK, ONE, AUTO, CEILING)
BASELINES = (PLAIN, FSYNC)
REFERENCES = (HASH, SAME_WORK)
CANDIDATES = (ONE, AUTO)
# Each pair (lighter, heavier): the heavier does everything the lighter does and more,
# so on a sound machine it cannot be faster.
HEAVIER = ((PLAIN, FSYNC), (PLAIN, HASH), (FSYNC, SAME_WORK), (HASH, SAME_WORK))


@attrs.frozen
class Job:
    """What one child process measures; crosses the process boundary as JSON."""

    variant: str
    repository: str
    digest: str
    size: int
    dest: str
    warm_repository: str
    warm_digest: str
    prefault: bool


@attrs.frozen
class Sample:
    seconds: float
    growth_mib: float
    # CPU time that processes other than this benchmark's used during the run, as a share
    # of the machine (1.0: every CPU busy the whole time); filled in by the parent.
    others: float = 0.0


# ---- the child: one measurement in a fresh process --------------------------------------


def _child(job: Job) -> None:
    import urllib3

    import ecr_layers

    client = ecr_layers.LayerClient()
    pool = urllib3.PoolManager()
    dest = Path(job.dest)
    warm = dest.with_name(dest.name + ".warm")
    parallel = 1 if job.variant == ONE else None
    # The same warm-up for every variant: imports done, botocore's and urllib3's
    # connections open, one small layer fetched.
    if job.variant in CANDIDATES:
        client.download_layer(job.warm_repository, job.warm_digest, warm, parallel=parallel)
        warm.unlink()
    else:
        pool.request("GET", client.get_layer_url(job.warm_repository, job.warm_digest).download_url)
    # Candidates look their URL up inside the timed call (it is part of the API); the
    # loops are given theirs, which favours the loops by one loopback API call.
    url = client.get_layer_url(job.repository, job.digest).download_url
    buffer = os.urandom(MIB)
    if job.prefault:
        _prefault(dest.with_name(dest.name + ".prefault"), job.size + 64 * MIB, buffer)
    check = job.digest if job.variant == HASH else None
    base = _reset_peak_rss()
    started = time.perf_counter()
    if job.variant in CANDIDATES:
        client.download_layer(job.repository, job.digest, dest, parallel=parallel)
    elif job.variant == CEILING:
        digest = hashlib.sha256()
        for _ in range(job.size // MIB):
            digest.update(buffer)
        digest.update(buffer[: job.size % MIB])
    elif job.variant == SAME_WORK:
        _verified_loop(pool, url, dest, job.digest)
    else:
        _loop(pool, url, dest, fsync=job.variant == FSYNC, digest=check)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "growth_mib": _peak_rss() - base}))


def _loop(
    pool: urllib3.PoolManager, url: str, dest: Path, *, fsync: bool, digest: str | None
) -> None:
    response = pool.request("GET", url, preload_content=False)
    assert response.status == 200, response.status
    with dest.open("xb") as file:
        if digest is None:
            for chunk in response.stream(MIB):
                file.write(chunk)
        else:
            sha = hashlib.sha256()
            for chunk in response.stream(MIB):
                sha.update(chunk)
                file.write(chunk)
            assert "sha256:" + sha.hexdigest() == digest
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    response.release_conn()


def _verified_loop(pool: urllib3.PoolManager, url: str, dest: Path, digest: str) -> None:
    temp = dest.with_name(dest.name + ".partial")
    response = pool.request("GET", url, preload_content=False)
    assert response.status == 200, response.status
    sha = hashlib.sha256()
    with temp.open("xb") as file:
        for chunk in response.stream(MIB):
            sha.update(chunk)
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
    response.release_conn()
    assert "sha256:" + sha.hexdigest() == digest
    temp.replace(dest)
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _prefault(path: Path, size: int, buffer: bytes) -> None:
    # On a VM that hands free memory back to its host (virtio-balloon free page
    # reporting, as on the Firecracker VM these figures come from), page cache that has sat
    # free for ~2 s must be faulted in again from the host: the first 256 MiB written
    # after a pause ran at ~450 MiB/s here, the next at ~4500.  A writer that keeps
    # little in the page cache (download_layer drops what it has written back) pays
    # this less, so an unequal pause before each variant decides the ratios.  Writing
    # and deleting a file of the layer's size just before the clock starts gives every
    # variant the same warm page cache, as on a machine that is simply running.
    with path.open("xb") as file:
        for _ in range(-(-size // MIB)):
            file.write(buffer)
    path.unlink()  # its dirty pages are dropped, never written


def _status_mib(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split(key + ":")[1].split()[0]) / 1024


def _reset_peak_rss() -> float:
    # VmHWM is this process image's own peak (ru_maxrss is not: it keeps the forking
    # parent's size across exec), and writing 5 to clear_refs resets it to VmRSS.
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _peak_rss() -> float:
    return _status_mib("VmHWM")


# ---- the parent: rounds, checks, report -------------------------------------------------


@attrs.define
class Bench:
    env: dict[str, str]
    server_pid: int
    scratch: Path
    size: int
    digest: str
    warm_digest: str
    prefault: bool
    runs: int = 0

    def measure(self, variant: str, layer: tuple[str, str, int] | None = None) -> Sample:
        """Run *variant* once in a fresh process; check and delete the file it wrote.

        *layer* is (repository, digest, size); the benchmark's main layer by default.
        """
        self.runs += 1
        repository, digest, size = layer or ("bench/big", self.digest, self.size)
        dest = self.scratch / f"layer-{self.runs:03d}.bin"  # a new name every run
        job = Job(
            variant=variant,
            repository=repository,
            digest=digest,
            size=size,
            dest=str(dest),
            warm_repository="bench/small",
            warm_digest=self.warm_digest,
            prefault=self.prefault,
        )
        before = _cpu_accounts(self.server_pid)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_download", "--child"],
            input=json.dumps(attrs.asdict(job)),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        after = _cpu_accounts(self.server_pid)
        if out.returncode != 0:
            raise RuntimeError(f"{variant} failed (status {out.returncode}):\n{out.stderr}")
        sample = Sample(**json.loads(out.stdout.splitlines()[-1]))
        wall, machine, ours = (b - a for a, b in zip(before, after, strict=True))
        sample = attrs.evolve(sample, others=max(machine - ours, 0.0) / (wall * _CPUS))
        if variant != CEILING:
            # Every file is checked here, whatever the code measured claims to have done.
            assert "sha256:" + _sha256_file(dest) == digest, variant
            dest.unlink()
        # Whatever one run left dirty is written now, not during the next one's clock.
        os.sync()
        return sample


def _rounds(bench: Bench, wanted: int, max_others: float) -> tuple[dict[str, list[Sample]], int]:
    """Run rounds until *wanted* are clean (or 3x as many were tried); return them and the rest.

    A round in which any run saw other processes use more than *max_others* of the CPU
    is thrown away whole and run again: what is discarded is chosen by the machine's
    load, measured outside the code under test, never by the figures themselves.
    """
    samples: dict[str, list[Sample]] = {variant: [] for variant in VARIANTS}
    discarded = 0
    for index in range(3 * wanted):
        if index - discarded == wanted:
            break
        shift = index % len(VARIANTS)
        runs = {variant: bench.measure(variant) for variant in VARIANTS[shift:] + VARIANTS[:shift]}
        busiest = max(sample.others for sample in runs.values())
        if busiest > max_others:
            discarded += 1
            print(f"  round {index + 1}: other processes took {busiest:.0%} of the CPU; run again")
            continue
        for variant, sample in runs.items():
            samples[variant].append(sample)
    return samples, discarded


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MIB):
            sha.update(chunk)
    return sha.hexdigest()


_TICK = os.sysconf("SC_CLK_TCK")
_CPUS = os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int]:
    # (all ticks, steal ticks) from the first line of /proc/stat.
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def _cpu_accounts(server_pid: int) -> tuple[float, float, float]:
    """(wall clock, CPU seconds the machine spent, CPU seconds this benchmark spent)."""
    # user, nice, system, irq, softirq: the kernel's interrupt time, loopback traffic
    # included, is charged to no process, so it counts as the machine's.
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    machine = (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / _TICK
    server = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    ours = (int(server[11]) + int(server[12])) / _TICK
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        ours += usage.ru_utime + usage.ru_stime
    return time.monotonic(), machine, ours


def main() -> int:
    args = _parser().parse_args()
    if args.child:
        _child(Job(**json.loads(sys.stdin.read())))
        return 0
    if args.quick:
        # Whether the script works is the question, so a busy machine is no reason to wait.
        args.size_mib, args.rounds, args.no_large, args.max_others = 16, 3, True, 1.0
    smoke = args.quick or args.rounds < MIN_ROUNDS
    size = args.size_mib * MIB
    from ecr_layers.testing import push_image_via_api

    _print_conditions(args)
    ticks_before = _cpu_ticks()
    with (
        server_process() as server,
        tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-download-") as scratch,
    ):
        ecr = ecr_client(server)
        [digest] = push_image_via_api(ecr, "bench/big", [os.urandom(size)])
        [warm] = push_image_via_api(ecr, "bench/small", [b"warm-up layer"])
        bench = Bench(
            child_env(server), server.pid, Path(scratch), size, digest, warm, not args.no_prefault
        )
        for _ in range(args.warmup):
            for variant in VARIANTS:
                bench.measure(variant)
        samples, discarded = _rounds(bench, args.rounds, args.max_others)
        large: dict[str, Sample] = {}
        if not args.no_large:
            # Memory for a layer four times larger; throughput is not the point here.
            [big] = push_image_via_api(ecr, "bench/huge", [os.urandom(4 * size)])
            for variant in CANDIDATES:
                large[variant] = bench.measure(variant, ("bench/huge", big, 4 * size))
    ticks_after = _cpu_ticks()
    total = ticks_after[0] - ticks_before[0]
    steal = (ticks_after[1] - ticks_before[1]) / total if total else 0.0
    if not samples[PLAIN]:
        print(f"\nWARNING: no round ran on a quiet machine ({discarded} tried); nothing to report")
        print("RESULT: ARTEFACT")
        return 0 if smoke else EXIT_ARTEFACT
    status = _report(args, samples, large, discarded, steal, smoke=smoke)
    if args.json:
        record = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "args": vars(args),
            "samples": {k: [attrs.asdict(s) for s in v] for k, v in samples.items()},
            "large": {k: attrs.asdict(s) for k, s in large.items()},
            "steal": steal,
            "discarded_rounds": discarded,
            "status": status,
        }
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0 if smoke else status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_download",
        description="Verified durable downloads vs plain urllib3 loops (see the module docstring).",
    )
    parser.add_argument("--size-mib", "--mib", type=int, default=256, help="layer size (256)")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="counted rounds (9)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (1)")
    parser.add_argument("--no-large", action="store_true", help="skip the 4x-size memory check")
    parser.add_argument(
        "--no-prefault",
        action="store_true",
        help="do not warm the page cache before each run (shows the VM artefact)",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=MAX_OTHERS,
        help="share of the CPU other processes may take in a run before its round is redone",
    )
    parser.add_argument("--dir", help="where the files are written (default: the temp dir)")
    parser.add_argument("--json", help="also write every sample to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 16 MiB, 3 rounds, no large check, busy rounds kept",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def _print_conditions(args: argparse.Namespace) -> None:
    from importlib.metadata import version

    import ecr_layers

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    where = Path(args.dir or tempfile.gettempdir()).resolve()
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} CPUs; "
        f"Linux {platform.release()}; Python {platform.python_version()}, "
        f"urllib3 {version('urllib3')}, botocore {version('botocore')}; "
        f"ecr_layers from {Path(ecr_layers.__file__).parent}; files in {where}"
    )
    print(
        f"{args.size_mib} MiB layer, {args.rounds} counted rounds after {args.warmup} warm-up "
        f"round(s), variant order rotated each round, each run a fresh process and a new file, "
        f"page cache {'NOT ' if args.no_prefault else ''}prefaulted before each run"
    )


def _report(
    args: argparse.Namespace,
    samples: dict[str, list[Sample]],
    large: dict[str, Sample],
    discarded: int,
    steal: float,
    *,
    smoke: bool,
) -> int:
    speeds = {v: [args.size_mib / s.seconds for s in runs] for v, runs in samples.items()}
    print(f"\n{'':34} {'MiB/s':>7}  {'(min - max)':>13}  peak RSS growth (max)")
    for variant in VARIANTS:
        growth = max(s.growth_mib for s in samples[variant])
        mid, low, high = median(speeds[variant]), min(speeds[variant]), max(speeds[variant])
        memory = "" if variant == CEILING else f"{growth:6.1f} MiB"
        print(f"  {variant:<32} {mid:7.0f}  ({low:5.0f} - {high:5.0f})  {memory}")
    failed = _targets(args, speeds, samples, large)
    artefact = _sanity(speeds)
    others = [s.others for runs in samples.values() for s in runs]
    counted = len(samples[PLAIN])
    print(
        f"  other processes' CPU in the counted runs: median {median(others):.0%}, "
        f"max {max(others):.0%} of the machine ({_CPUS} CPUs); CPU steal {steal:.1%}; "
        f"{discarded} busy round(s) discarded and run again"
    )
    if counted < args.rounds:
        artefact.append(
            f"the machine was not quiet: only {counted} of {args.rounds} rounds ran with other "
            f"processes under {args.max_others:.0%} of the CPU ({discarded} discarded)"
        )
    if median(others) > MAX_OTHERS:  # reached only when --max-others was raised
        artefact.append(
            f"the machine was busy: other processes took {median(others):.0%} of the CPU "
            f"in the median run (a quiet machine: at most {MAX_OTHERS:.0%})"
        )
    if steal > MAX_STEAL:
        artefact.append(f"the hypervisor took {steal:.1%} of the CPU time (steal)")
    if smoke:
        print("\nSMOKE RUN (--quick or fewer than 9 rounds): not a measurement; record nothing.")
    if artefact:
        print("\n" + "!" * 78)
        print("WARNING: this run is a MACHINE ARTEFACT and must not be recorded; rerun it:")
        for reason in artefact:
            print(f"  - {reason}")
        print("!" * 78)
        print("RESULT: ARTEFACT")
        return EXIT_ARTEFACT
    print(f"RESULT: {'FAIL' if failed else 'PASS'}")
    return EXIT_FAIL if failed else 0


def _per_round(speeds: dict[str, list[float]], a: str, b: str) -> list[float]:
    return [x / y for x, y in zip(speeds[a], speeds[b], strict=True)]


def _targets(
    args: argparse.Namespace,
    speeds: dict[str, list[float]],
    samples: dict[str, list[Sample]],
    large: dict[str, Sample],
) -> bool:
    """Print the ratios and memory against their targets; return whether any was missed."""
    failed = False
    print(
        f"\nThroughput ratios, candidate MiB/s / baseline MiB/s: median of the "
        f"{len(samples[PLAIN])} "
        "per-round ratios [ratio of the medians]"
    )
    for candidate in CANDIDATES:
        for baseline in (*BASELINES, *REFERENCES):
            ratio = median(_per_round(speeds, candidate, baseline))
            if baseline in BASELINES:
                ok = ratio >= TARGET_RATIO
                failed |= not ok
                verdict = f"target >= {TARGET_RATIO}  {'PASS' if ok else 'FAIL'}"
            else:
                verdict = "(reference, not judged)"
            of_medians = median(speeds[candidate]) / median(speeds[baseline])
            print(f"  {candidate:<27} / {baseline:<33} {ratio:5.2f} [{of_medians:4.2f}]  {verdict}")
    for baseline in BASELINES:
        # Hashing one digest is sequential, so no verified download outruns sha256 alone.
        bound = median(_per_round(speeds, CEILING, baseline))
        note = "" if bound >= TARGET_RATIO else f"  (< {TARGET_RATIO}: the target is out of reach)"
        print(f"  at most, any verified download / {baseline:<22} {bound:5.2f}{note}")
    growth = max(s.growth_mib for s in samples[ONE])
    ok = growth <= TARGET_GROWTH_MIB
    failed |= not ok
    print(
        f"  {ONE} peak RSS growth {growth:.1f} MiB  target <= {TARGET_GROWTH_MIB:.0f}  "
        f"{'PASS' if ok else 'FAIL'}"
    )
    for variant, sample in large.items():
        ok = sample.growth_mib <= LARGE_GROWTH_MIB
        failed |= not ok
        print(
            f"  {4 * args.size_mib} MiB layer, {variant}: "
            f"{4 * args.size_mib / sample.seconds:5.0f} MiB/s, {sample.growth_mib:.1f} MiB "
            f"peak RSS growth  target <= {LARGE_GROWTH_MIB:.0f}  {'PASS' if ok else 'FAIL'}"
        )
    return failed


def _sanity(speeds: dict[str, list[float]]) -> list[str]:
    """Print the checks that tell a machine artefact; return what tripped."""
    artefact = []
    print("\nSanity: a variant that does strictly more work must not come out faster")
    for light, heavy in HEAVIER:
        ratios = _per_round(speeds, light, heavy)
        inverted = sum(r < 1 for r in ratios)
        bad = median(speeds[light]) < median(speeds[heavy]) or median(ratios) < 1
        print(
            f"  {light} / {heavy}: {median(ratios):.2f} (slower in {inverted}/{len(ratios)} "
            f"rounds)  {'ARTEFACT' if bad else 'ok'}"
        )
        if bad:
            artefact.append(f"{light} came out slower than {heavy}")
    for candidate in CANDIDATES:
        share = median(speeds[candidate]) / median(speeds[CEILING])
        bad = share > 1
        print(f"  {candidate} / {CEILING}: {share:.2f}  {'ARTEFACT' if bad else 'ok (<= 1)'}")
        if bad:
            artefact.append(f"{candidate} beat sha256 alone in memory")
    return artefact


if __name__ == "__main__":
    sys.exit(main())
