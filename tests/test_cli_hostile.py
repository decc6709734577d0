"""The command line against a hostile environment: a broken AWS configuration, a
terminal that cannot show the output, and Ctrl-C at any moment (each found in a review).

Whatever happens, the command prints one line on stderr and exits with its documented
status: 2 for configuration it cannot use, 130 for Ctrl-C, never a traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import pathlib
import sys

import pytest
from botocore import exceptions as bce

import ecr_layers
from ecr_layers import _botocore
from ecr_layers.testing import LocalECR

from .imaging import REPO
from .test_cli import code_of, one_line, run

#: The console script pip made for ``[project.scripts]``: what a user runs.
SCRIPT = pathlib.Path(sys.executable).with_name("ecr-layers")

# -- a broken AWS configuration is bad configuration: exit 2 -------------------------

#: Environments botocore refuses, by name: ``{garbage}`` and ``{binary}`` are files of
#: that kind, made for each test.
BROKEN: dict[str, dict[str, str]] = {
    "unparseable config file": {"AWS_CONFIG_FILE": "{garbage}"},
    "binary config file": {"AWS_CONFIG_FILE": "{binary}"},
    "unparseable credentials file": {"AWS_SHARED_CREDENTIALS_FILE": "{garbage}"},
    "bad defaults mode": {"AWS_DEFAULTS_MODE": "bogus"},
    "unknown profile": {"AWS_PROFILE": "no-such-profile"},
    "bad STS endpoints setting": {"AWS_STS_REGIONAL_ENDPOINTS": "bogus"},
    "bad IMDS endpoint mode": {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "bogus"},
    "bad checksum setting": {"AWS_REQUEST_CHECKSUM_CALCULATION": "bogus"},
}


@pytest.fixture
def broken(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Set the environment of one of `BROKEN`; return its name."""
    files = {"garbage": tmp_path / "garbage", "binary": tmp_path / "binary"}
    files["garbage"].write_text("garbage [[[\n=== not ini\n")
    files["binary"].write_bytes(b"[default]\nregion = us-east-1\n\xff\xfe\x00\n")
    name: str = request.param
    for variable, value in BROKEN[name].items():
        monkeypatch.setenv(variable, value.format_map(files))
    return name


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_is_a_configuration_error(local_ecr: LocalECR, broken: str) -> None:
    with pytest.raises(ecr_layers.ConfigurationError) as caught, ecr_layers.LayerClient() as client:
        client.get_layer_url(REPO, "sha256:" + "0" * 64)
    assert isinstance(caught.value.__cause__, bce.BotoCoreError), broken


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_is_a_configuration_error_for_asyncio_too(
    local_ecr: LocalECR, broken: str
) -> None:
    from ecr_layers.aio import AsyncLayerClient

    async def first_use() -> None:
        async with AsyncLayerClient() as client:  # its botocore client opens on first use
            await client.get_layer_url(REPO, "sha256:" + "0" * 64)

    with pytest.raises(ecr_layers.ConfigurationError) as caught:
        asyncio.run(first_use())
    assert isinstance(caught.value.__cause__, bce.BotoCoreError), broken


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_exits_2_on_one_line(local_ecr: LocalECR, broken: str) -> None:
    out = run("url", REPO, "sha256:" + "0" * 64)
    assert out.returncode == code_of("ConfigurationError") == 2, (broken, out.stderr)
    assert one_line(out.stderr).startswith("ecr-layers: ConfigurationError: "), broken
    assert local_ecr.stats.count() == 0  # refused before anything was sent


def botocore_error_classes() -> list[type[bce.BotoCoreError]]:
    return [
        cls
        for _, cls in inspect.getmembers(bce, inspect.isclass)
        if issubclass(cls, bce.BotoCoreError)
    ]


class _AnyField(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


@pytest.mark.parametrize("cls", botocore_error_classes(), ids=lambda c: c.__name__)
def test_nothing_botocore_raises_while_a_client_is_made_is_an_unknown_error(
    cls: type[bce.BotoCoreError],
) -> None:
    # Making a client sends ECR nothing: what botocore refuses then is a setting it
    # cannot use (or the credentials', or the network's, which the error map knows).
    error = cls.__new__(cls)
    Exception.__init__(error, cls.fmt.format_map(_AnyField()))
    error.kwargs = {}
    with pytest.raises(ecr_layers.ECRError) as caught, _botocore.creating():
        raise error
    assert type(caught.value) is not ecr_layers.UnknownError
    assert caught.value.__cause__ is error


def test_the_class_list_is_botocores() -> None:
    names = {cls.__name__ for cls in botocore_error_classes()}
    assert {"ConfigParseError", "InvalidDefaultsMode", "ProfileNotFound"} <= names
    assert len(names) > 50
