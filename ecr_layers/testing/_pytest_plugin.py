"""
The ``local_ecr`` pytest fixture, registered through the ``pytest11`` entry point.

pytest loads this module in every test run of every project that has ecr-layers
installed, so it imports LocalECR only inside the fixture: a run that never asks
for ``local_ecr`` never imports the server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._server import LocalECR

# Variables that would steer botocore away from the LocalECR endpoint or its
# credentials: a profile, a session token, another endpoint.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def local_ecr(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalECR]:
    """A started `LocalECR`, with the environment and ecr-layers' default client on it.

    ``AWS_ENDPOINT_URL_ECR``, the credentials and the region point at the endpoint;
    the shared config and credentials files are hidden; every change, and the
    default client, is put back afterwards.
    """
    from ecr_layers import set_default_client

    from ._server import LocalECR

    with LocalECR() as ecr:
        for name in _CLEARED:
            monkeypatch.delenv(name, raising=False)
        empty = tmp_path_factory.mktemp("aws-config") / "none"
        monkeypatch.setenv("AWS_CONFIG_FILE", os.fspath(empty))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.fspath(empty))
        for name, value in ecr.env().items():
            monkeypatch.setenv(name, value)
        # None, not ecr.client(): the next call then builds the default client from
        # the environment just set, exactly as in production.
        previous = set_default_client(None)
        try:
            yield ecr
        finally:
            set_default_client(previous)
