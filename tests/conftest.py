from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator

import botocore.loaders
import botocore.session
import pytest
from hypothesis import settings

# pytester drives the local_ecr plugin in a child pytest; tests.imaging holds the image
# tests' shared fixtures.
pytest_plugins = ["pytester", "tests.imaging"]

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# Every botocore session reads botocore's JSON models (the ECR model, endpoints,
# partitions) through a loader of its own, and every client the tests build
# (LayerClient, AsyncLayerClient, the default client, LocalECR's) makes a session:
# about 0.25 s of parsing each, most of the suite's CPU.  One loader per data path,
# shared by every session of the test process, parses each file once.  The loader
# caches what it parsed and botocore only reads it, as it already does when one
# session makes many clients.
_LOADERS: dict[object, botocore.loaders.Loader] = {}


def _register_shared_loader(self: botocore.session.Session) -> None:
    def shared() -> botocore.loaders.Loader:
        path = self.get_config_variable("data_path")
        if path not in _LOADERS:
            _LOADERS[path] = botocore.loaders.create_loader(path)
        return _LOADERS[path]

    self._components.lazy_register_component("data_loader", shared)  # type: ignore[attr-defined]


botocore.session.Session._register_data_loader = _register_shared_loader  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_aws_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must never pick up a developer's real AWS profile or credentials.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def sigint_reaches_children() -> Iterator[None]:
    """Children started during the test take SIGINT as Python does: KeyboardInterrupt.

    A process started with SIGINT ignored (a background job of a non-interactive
    shell, as a CI runner or a script may start the suite) passes the ignoring on to
    every child it starts, and Python then never raises KeyboardInterrupt in them: a
    test that interrupts a child would wait for it in vain.  A handler, unlike an
    ignored signal, is reset to the default action when a child starts its program.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def no_collection_at_the_recursion_limit() -> Iterator[None]:
    """The cyclic garbage collector held off, for tests that make json parse to Python's
    recursion limit (nesting too deep, refused by the code under test).

    A collection that starts at that depth runs whatever finalizers the garbage of
    earlier tests has (a coroutine's, a socket's) with no stack left: they fail, and so
    does pytest's hook that would report them ("Failed to process unraisable
    exception"), which fails the test at hand at random, through no fault of its own.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
