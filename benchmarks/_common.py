"""Shared by the benchmarks: a LocalECR in its own process, so its CPU is not measured."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import attrs

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient


@attrs.frozen
class Server:
    endpoint_url: str
    env: dict[str, str]


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
        first = proc.stdout.readline().strip()
        endpoint = first.rsplit(" ", 1)[1]
        env = {}
        for _ in range(5):
            name, value = proc.stdout.readline().strip().removeprefix("export ").split("=", 1)
            env[name] = value
        yield Server(endpoint, env)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def child_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.env)
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    env.pop("AWS_PROFILE", None)
    return env


def median(values: list[float]) -> float:
    return statistics.median(values)


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
