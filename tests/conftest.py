from __future__ import annotations

import os

import pytest
from hypothesis import settings

# pytester drives the local_ecr plugin in a child pytest; tests.imaging holds the image
# tests' shared fixtures.
pytest_plugins = ["pytester", "tests.imaging"]

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _no_aws_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must never pick up a developer's real AWS profile or credentials.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
