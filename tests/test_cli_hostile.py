"""The command line against a hostile environment: a broken AWS configuration, a
terminal that cannot show the output, and Ctrl-C at any moment (each found in a review).

Whatever happens, the command prints one line on stderr and exits with its documented
status: 2 for configuration it cannot use, 130 for Ctrl-C, never a traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import subprocess
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


# -- the output never fails on the terminal's encoding --------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "ascii:strict", "latin-1:strict"])
def test_output_that_the_terminal_cannot_encode_is_escaped(
    local_ecr: LocalECR, tmp_path: pathlib.Path, encoding: str
) -> None:
    [digest] = local_ecr.push_image(REPO, [b"layer"])
    where = tmp_path / "ünïcødé ✓"
    where.mkdir()
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "download", REPO, digest, "-o", str(where)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    printed = out.stdout.decode(encoding.split(":", maxsplit=1)[0])  # all the terminal could take
    assert "\\u2713" in printed  # the check mark, escaped: still readable, still one line
    assert len(printed.splitlines()) == 1


def test_an_error_line_that_the_terminal_cannot_encode_is_escaped(local_ecr: LocalECR) -> None:
    local_ecr.create_repository(REPO)
    local_ecr.faults.fail_next(
        "GetDownloadUrlForLayer", code="LayersNotFoundException", status=400, message="nö ✓"
    )
    env = dict(os.environ, PYTHONIOENCODING="ascii:strict")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "url", REPO, "sha256:" + "0" * 64],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == code_of("LayersNotFound"), out.stderr
    assert "n\\xf6 \\u2713" in one_line(out.stderr.decode("ascii"))


def test_the_demo_runs_on_an_ascii_terminal() -> None:
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "demo"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    assert "\\u2026" in out.stdout.decode("ascii")  # its ellipses, escaped


def test_a_file_name_that_is_not_utf8_is_printed_escaped(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    # A name of bytes that are no UTF-8 reaches Python as lone surrogates, which even a
    # UTF-8 terminal's strict encoder refuses.
    [digest] = local_ecr.push_image(REPO, [b"layer"])
    where = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    os.mkdir(where)
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "download", REPO, digest, "-o", where],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    assert b"bad\\udcff" in out.stdout
