"""Shared by the benchmarks: a LocalECR in its own process, so its CPU is not measured."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, cast

import attrs

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

MIB = 1024 * 1024
GIB = 1024 * MIB

# What a benchmark needs from `ecr-layers serve`'s banner; anything else it prints is kept too.
_NEEDED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
_BANNER_TIMEOUT = 30.0
# Once everything needed has arrived, how long to wait for more `export` lines of the banner.
_BANNER_QUIET = 0.3


@attrs.frozen
class Server:
    endpoint_url: str
    env: dict[str, str]
    pid: int = 0  # the server process, for benchmarks that account for its CPU time


@contextlib.contextmanager
def server_process(*options: str) -> Iterator[Server]:
    """Run ``ecr-layers serve`` in a child process; yield its endpoint and environment."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", "serve", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        # Drained for the server's whole life, so that nothing it prints later can fill
        # the pipe and stall it in the middle of a measurement.
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        yield _read_banner(proc, lines)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    with contextlib.suppress(ValueError, OSError):  # closed under us at shutdown
        for line in stream:
            lines.put(line)
    lines.put(None)


def _read_banner(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> Server:
    # Parsed by content, not by line position: `export NAME=VALUE` lines, and the first
    # URL on any other line as the endpoint, so a reworded banner does not break the
    # benchmarks.
    endpoint: str | None = None
    env: dict[str, str] = {}
    deadline = time.monotonic() + _BANNER_TIMEOUT
    while True:
        url = env.get("AWS_ENDPOINT_URL_ECR") or env.get("AWS_ENDPOINT_URL") or endpoint
        complete = url is not None and all(name in env for name in _NEEDED)
        wait = _BANNER_QUIET if complete else deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(wait, 0.0))
        except queue.Empty:
            if complete:
                assert url is not None
                return Server(url, env, proc.pid)
            raise RuntimeError(
                f"ecr-layers serve printed no endpoint and credentials in {_BANNER_TIMEOUT} s"
            ) from None
        if line is None:
            raise RuntimeError(f"ecr-layers serve exited early (status {proc.wait(10)})")
        if line.startswith("export "):
            name, _, value = " ".join(shlex.split(line.removeprefix("export "))).partition("=")
            env[name] = value
        elif endpoint is None and (found := re.search(r"https?://[^\s,;]+", line)):
            endpoint = found.group(0)


def child_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.env)
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    env.pop("AWS_PROFILE", None)
    return env


def median(values: list[float]) -> float:
    return statistics.median(values)


def per_round(numerators: list[float], denominators: list[float]) -> list[float]:
    """Round by round, numerator / denominator: runs seconds apart, so that slow drift of
    the machine cancels out of each ratio."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def cpu_seconds() -> float:
    """CPU seconds (user and system) this process has used so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ecr_client(server: Server) -> ECRClient:
    """A plain botocore ECR client for the server, botocore's retries off."""
    import botocore.session

    import ecr_layers

    client = botocore.session.Session().create_client(
        "ecr",
        endpoint_url=server.endpoint_url,
        region_name=server.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"],
        config=ecr_layers.BOTOCORE_CONFIG,
    )
    return cast("ECRClient", client)
