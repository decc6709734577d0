"""What the image tests share: a LocalECR, a client on it with fast retries, and names.

Registered as a plugin in conftest.py, so its fixtures reach every test module; a
module that defines its own ``ecr`` or ``client`` keeps its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR

REPO = "team/app"
FAST = ecr_layers.RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.002, wait_jitter=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def ecr() -> Iterator[LocalECR]:
    with LocalECR() as server:
        yield server


@pytest.fixture
def client(ecr: LocalECR) -> Iterator[ecr_layers.LayerClient]:
    with ecr.client(retry_policy=FAST) as layer_client:
        yield layer_client
