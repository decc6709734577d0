"""The command line: exit codes, one-line errors, --json, and no secret in any output.

Every input or environment problem must print exactly one line on stderr, never a
traceback, and exit with the status `EXIT_CODES` documents for its kind; the
expected statuses below come from that table, not from literals.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import pathlib
import pkgutil
import re
import stat
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import _cli
from ecr_layers.testing import LocalECR

ROOT = pathlib.Path(__file__).parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_layers", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ) if env is None else env,
        timeout=60,
        check=False,  # the exit status is what these tests check
    )


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process; return (status, stdout, stderr)."""
    status = _cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def code_of(name: str) -> int:
    """The exit status EXIT_CODES gives an exception class, by name."""
    [code] = [code for cls, code in _cli.EXIT_CODES if cls.__name__ == name]
    return code


def one_line(err: str) -> str:
    """The single line on stderr; fails on a traceback or on more than one line."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a `serve` that got past its argument checks fail at once instead of serving."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("serve started: its arguments were not refused")

    monkeypatch.setattr("ecr_layers.testing.LocalECR", refuse)


def secrets_of(url: str) -> list[str]:
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    return [query["X-Amz-Signature"], query["X-Amz-Credential"]]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECR_LAYERS_DEBUG", raising=False)


# -- what works -----------------------------------------------------------------------


def test_url_prints_the_url_and_json(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    plain = run("url", "team/app", digest)
    assert plain.returncode == 0
    assert plain.stdout.startswith(local_ecr.endpoint_url)
    doc = json.loads(run("url", "team/app", digest, "--json").stdout)
    assert doc["layerDigest"] == digest
    assert doc["downloadUrl"].startswith(local_ecr.endpoint_url)
    assert doc["expiresAt"].endswith("+00:00")


def test_download_writes_the_verified_layer_quietly(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    data = os.urandom(100_000)
    [digest] = local_ecr.push_image("team/app", [data])
    out = run("download", "team/app", digest, "-o", str(tmp_path / "layer"), "--parallel", "2")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "layer").read_bytes() == data
    assert out.stderr == ""  # not a terminal: no progress bar
    assert run("download", "team/app", digest, "-o", str(tmp_path), "-q").stdout == ""


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = call(capsys, "--version")
    assert (status, err) == (0, "")
    assert out == f"ecr-layers {ecr_layers.__version__}\n"
    assert ecr_layers.__version__ not in ("", "0+unknown")  # read from the installed metadata


# -- one line and the documented status for every problem ------------------------------


@pytest.mark.parametrize(
    ("args", "cls"),
    [
        (("url", "Team/App", "sha256:ab"), "InvalidParameter"),
        (("url", "team/app", "sha256:" + "0" * 64), "LayersNotFound"),
        (("url", "team/nope", "sha256:" + "0" * 64), "RepositoryNotFound"),
        (("url", "team/app", "notadigest"), "InvalidParameter"),
        (("download", "team/app", "notadigest"), "InvalidParameter"),
        (("download", "team/app", "sha256:abc"), "UnsupportedDigest"),
    ],
)
def test_errors_are_one_line_with_a_distinct_exit_code(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], cls: str
) -> None:
    # In this process: the entry point's own exit statuses are the subprocess tests' (url,
    # download, a closed stdout); these check the mapping, six times over.
    local_ecr.create_repository("team/app")
    status, _, err = call(capsys, *args)
    assert status == code_of(cls)
    assert one_line(err).startswith(f"ecr-layers: {cls}")


def test_a_malformed_digest_is_bad_input_for_url_and_download_alike(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]
) -> None:
    local_ecr.create_repository("team/app")
    statuses = {
        call(capsys, command, "team/app", "notadigest")[0] for command in ("url", "download")
    }
    assert statuses == {2}


def test_an_unverifiable_digest_points_at_no_verify(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]
) -> None:
    local_ecr.create_repository("team/app")
    line = one_line(call(capsys, "download", "team/app", "sha256:abc")[2])
    assert "--no-verify" in line
    assert "verify=False" not in line


def test_inaccessible_and_auth_and_server_errors(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = local_ecr.add_layer("team/app", b"orphan")
    out = run("url", "team/app", orphan)
    assert out.returncode == code_of("LayerInaccessible") == 3
    assert "LayerInaccessible (LayerInaccessibleException)" in out.stderr
    assert "[request id " in out.stderr
    local_ecr.faults.fail_next("GetDownloadUrlForLayer", 100)
    # In this process, where test mode can take the backoff's 3 s out of the default
    # policy's five attempts.
    with ecr_layers.set_testing(True, attempts=5):
        status, _, err = call(capsys, "url", "team/app", orphan)
    assert status == code_of("TransientError") == 5
    assert err.startswith("ecr-layers: ServerError (ServerException)")
    assert local_ecr.stats.count("GetDownloadUrlForLayer", status=500) == 5
    local_ecr.faults.clear()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    out = run("url", "team/app", orphan)
    assert out.returncode == code_of("CredentialsError") == 4
    assert "CredentialsError (InvalidSignatureException)" in out.stderr


@pytest.mark.parametrize(
    "endpoint",
    [
        "notaurl",
        "http://127.0.0.1:99999",
        "http://user:s3cr3t@127.0.0.1:99999",
        "ftp://user:s3cr3t@127.0.0.1:1",
        "http://[::1",
    ],
)
def test_a_bad_endpoint_is_a_configuration_error(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], endpoint: str
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    status, _, err = call(capsys, "url", "--endpoint-url", endpoint, "team/app", digest)
    assert status == code_of("ConfigurationError") == 2
    assert one_line(err).startswith("ecr-layers: ConfigurationError")
    status, _, err = call(capsys, "download", "--endpoint-url", endpoint, "team/app", digest)
    assert status == 2
    assert one_line(err).startswith("ecr-layers: ConfigurationError")
    assert "s3cr3t" not in err


@pytest.mark.parametrize("parallel", ["0", "-1", "17", "abc", "1.5", ""])
def test_parallel_out_of_range_is_a_usage_error(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], parallel: str
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    status, _, err = call(capsys, "download", "team/app", digest, "--parallel", parallel)
    assert status == code_of("UsageError") == 2
    assert "--parallel" in one_line(err)
    assert local_ecr.stats.count() == 0  # refused before anything left the machine


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        ((), "required"),
        (("bogus",), "invalid choice"),
        (("url", "team/app"), "required"),
        (("download", "team/app", "sha256:ab", "--nope"), "unrecognized"),
        (("serve", "--latency", "-1"), "--latency"),
        (("serve", "--bandwidth", "0"), "--bandwidth"),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    usage: str,
) -> None:
    never_serve(monkeypatch)
    status, out, err = call(capsys, *argv)
    assert (status, out) == (2, "")
    line = one_line(err)
    assert usage in line
    assert "--help" in line


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = call(capsys, "download", "--help")
    assert status == 0
    assert "--no-verify" in out
    assert "--registry-id" in out


def _destination_cases(tmp_path: pathlib.Path) -> dict[str, str]:
    return {
        "in /proc": "/proc/nope.bin",
        "missing directory": str(tmp_path / "missing" / "layer.bin"),
        "missing directory with a trailing slash": str(tmp_path / "newdir") + os.sep,
        "a name over NAME_MAX": str(tmp_path / ("a" * 256)),
        "a NUL in the name": str(tmp_path / "a\0b"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "in /proc",
        "missing directory",
        "missing directory with a trailing slash",
        "a name over NAME_MAX",
        "a NUL in the name",
    ],
)
def test_a_bad_destination_is_a_file_system_error_found_before_the_lookup(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, case: str
) -> None:
    if case == "in /proc" and not pathlib.Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    output = _destination_cases(tmp_path)[case]
    status, out, err = call(capsys, "download", "team/app", digest, "-o", output)
    assert status == code_of("DestinationError") == 7
    assert one_line(err).startswith("ecr-layers: DestinationError")
    assert out == ""
    if case != "in /proc":  # as root, access() calls /proc writable: found when writing
        # Checked before the URL lookup: nothing was asked of the service.
        assert local_ecr.stats.count("GetDownloadUrlForLayer") == 0
    # A trailing slash means a directory: no file named "newdir" may appear.
    assert list(tmp_path.iterdir()) == []


def test_a_long_name_that_fits_is_written(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    # 240 characters fit NAME_MAX; the temporary name beside it must fit too.
    data = os.urandom(1000)
    [digest] = local_ecr.push_image("team/app", [data])
    target = tmp_path / ("a" * 240)
    status, out, err = call(capsys, "download", "team/app", digest, "-o", str(target))
    assert (status, err) == (0, "")
    assert out.strip() == str(target)
    assert target.read_bytes() == data


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_is_a_file_system_error(
    local_ecr: LocalECR,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    where: str,
) -> None:
    if not pathlib.Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell the download's file from others")
    [digest] = local_ecr.push_image("team/app", [os.urandom(300_000)])
    real: Callable[..., int | None] = getattr(os, where)

    def full(fd: int, *args: object) -> int | None:
        # Only regular files in the destination directory: the disk that is full.
        if stat.S_ISREG(os.fstat(fd).st_mode) and os.readlink(f"/proc/self/fd/{fd}").startswith(
            str(tmp_path)
        ):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(os, where, full)
    status, out, err = call(capsys, "download", "team/app", digest, "-o", str(tmp_path))
    assert status == code_of("DestinationError") == 7
    line = one_line(err)
    assert line.startswith("ecr-layers: DestinationError (ENOSPC)")
    assert os.strerror(errno.ENOSPC) in line
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_a_404_from_the_download_host_is_not_found(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    local_ecr.faults.fail_next_blobs(1, status=404, code="NoSuchKey", message="gone")
    status, _, err = call(capsys, "download", "team/app", digest, "-o", str(tmp_path))
    assert status == code_of("LayersNotFound") == 3
    assert one_line(err).startswith("ecr-layers: LayersNotFound")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("status", "cls"), [(401, "AccessDenied"), (403, "AccessDenied")])
def test_refused_by_the_download_host_is_access(
    local_ecr: LocalECR,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    status: int,
    cls: str,
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    local_ecr.faults.fail_next_blobs(1, status=status, code="AccessDenied", message="Access Denied")
    code, _, err = call(capsys, "download", "team/app", digest, "-o", str(tmp_path))
    assert code == code_of(cls) == 4
    assert one_line(err).startswith(f"ecr-layers: {cls}")


def test_digest_mismatch_exit_code_and_no_secret(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [os.urandom(5000)])
    url = local_ecr.client().get_layer_url("team/app", digest).download_url
    local_ecr.faults.corrupt_next_blobs(1)
    out = run("download", "team/app", digest, "-o", str(tmp_path))
    assert out.returncode == code_of("DigestMismatch") == 6
    assert one_line(out.stderr).startswith("ecr-layers: DigestMismatch")
    assert list(tmp_path.iterdir()) == []
    for secret in secrets_of(url):
        assert secret not in out.stderr + out.stdout


def test_only_a_digest_mismatch_exits_6() -> None:
    assert [cls.__name__ for cls, code in _cli.EXIT_CODES if code == 6] == ["DigestMismatch"]


# -- what reaches the terminal ---------------------------------------------------------

_ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\x00\r\x08\u202e"


def test_server_text_reaches_stderr_without_control_characters(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    local_ecr.faults.fail_next(
        "GetDownloadUrlForLayer", 1, code="LayersNotFoundException", status=400,
        message=f"api{_ESCAPES}says",
    )  # fmt: skip
    status, _, err = call(capsys, "url", "team/app", digest)
    assert status == 3
    line = one_line(err)
    assert "api" in line
    assert "says" in line
    local_ecr.faults.fail_next_blobs(1, status=404, code="NoSuchKey", message=f"blob{_ESCAPES}x")
    status, _, err = call(capsys, "download", "team/app", digest, "-o", str(tmp_path))
    assert status == 3
    for line in (one_line(err), err):
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", line), repr(line)


@given(st.text())
def test_printable_is_one_line_without_control_characters(text: str) -> None:
    shown = _cli.printable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert "\u202e" not in shown
    assert "\n" not in shown


def test_error_line_redacts_any_url_in_a_message() -> None:
    from ecr_layers import DownloadError, LayerRef

    exc = DownloadError(
        "failed: https://b.s3.amazonaws.com/k?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA1 gone",
        request_id="r1",
        layer=LayerRef("team/app", "sha256:" + "a" * 64),
    )
    line = _cli.error_line(exc)
    assert "s3cr3t" not in line
    assert "AKIA1" not in line
    assert line.endswith("[request id r1]")
    assert _cli.exit_code(exc) == 5


def test_a_url_hidden_behind_a_control_character_is_still_redacted() -> None:
    from ecr_layers import ServerError

    exc = ServerError("see \x1bhttps://h/k?X-Amz-Signature=s3cr3t now")
    assert "s3cr3t" not in _cli.error_line(exc)


def test_a_bug_is_one_line_naming_the_class_but_not_the_message(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_layers import LayerClient

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("https://h/k?X-Amz-Signature=s3cr3t")

    monkeypatch.setattr(LayerClient, "get_layer_url", broken)
    status, _, err = call(capsys, "url", "team/app", "sha256:" + "a" * 64)
    assert status == 1
    line = one_line(err)
    assert "RuntimeError" in line
    assert "bug" in line
    assert "ECR_LAYERS_DEBUG=1" in line
    assert "s3cr3t" not in line
    monkeypatch.setenv("ECR_LAYERS_DEBUG", "1")
    status, _, err = call(capsys, "url", "team/app", "sha256:" + "a" * 64)
    assert status == 1
    assert "Traceback" in err  # asked for


def test_ctrl_c_exits_130(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_layers import LayerClient

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LayerClient, "download_layer", interrupted)
    status, _, err = call(capsys, "download", "team/app", "sha256:" + "a" * 64)
    assert status == code_of("KeyboardInterrupt") == 130
    assert one_line(err) == "ecr-layers: interrupted"


def test_a_closed_stdout_is_no_traceback(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    read, write = os.pipe()
    os.close(read)  # nobody will read what url prints
    proc = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "url", "team/app", digest],
        stdout=write, stderr=subprocess.PIPE, text=True, env=dict(os.environ), timeout=60,
        check=False,
    )  # fmt: skip
    os.close(write)
    assert proc.returncode == code_of("OSError") == 7
    assert "EPIPE" in one_line(proc.stderr)


# -- the table, the help and the README agree ------------------------------------------


def test_exit_codes_are_most_specific_first() -> None:
    # An entry after a more general one would never be reached.
    for i, (later, code) in enumerate(_cli.EXIT_CODES):
        for earlier, earlier_code in _cli.EXIT_CODES[:i]:
            assert not issubclass(later, earlier) or code == earlier_code, (later, earlier)


def test_every_public_error_has_a_documented_status() -> None:
    errors = [
        getattr(ecr_layers, name)
        for name in ecr_layers.__all__
        if isinstance(getattr(ecr_layers, name), type)
        and issubclass(getattr(ecr_layers, name), ecr_layers.ECRError)
    ]
    assert len(errors) > 15
    for cls in errors:
        if cls in (ecr_layers.ECRError, ecr_layers.LayerError):
            continue  # bases, never raised as such
        exc = cls.__new__(cls)
        assert _cli.exit_code(exc) in {2, 3, 4, 5, 6, 7}, cls
    assert _cli.exit_code(ValueError()) == 1  # not ours: a bug
    assert _cli.exit_code(PermissionError()) == 7


def _readme_exit_table() -> dict[int, set[str]]:
    """The README's exit-status table: status -> the backquoted class names in its row."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|\n]*)\|([^|\n]*)\|\s*$", section, re.MULTILINE)
    return {int(code): set(re.findall(r"`(\w+)`", classes)) for code, _, classes in rows}


def test_the_readme_documents_every_exit_status() -> None:
    documented = _readme_exit_table()
    assert documented, "no exit-status table under the README's 'Command line' heading"
    expected: dict[int, set[str]] = {0: set(), 1: set()}
    for cls, code in _cli.EXIT_CODES:
        names = expected.setdefault(code, set())
        if cls is not _cli.UsageError:  # the README says "a wrong command line"
            names.add(cls.__name__)
    assert documented == expected
    assert set(_cli.MEANINGS) == set(expected)


def test_help_lists_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = call(capsys, "--help")
    assert status == 0
    for code, meaning in _cli.MEANINGS.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}", out, re.MULTILINE), code
    for cls, _code in _cli.EXIT_CODES:
        if cls is not _cli.UsageError:
            assert cls.__name__ in out


def _all_actions(parser: object) -> list[tuple[str, object]]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: list[tuple[str, object]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{name} {n}", a) for n, a in _all_actions(sub)]
        else:
            found.append((action.dest, action))
    return found


def test_every_argument_has_help() -> None:
    import argparse

    actions = _all_actions(_cli._parser())
    assert len(actions) > 20
    for name, action in actions:
        assert isinstance(action, argparse.Action)
        assert action.help, name
        assert action.help != argparse.SUPPRESS, name


def _library_constant(name: str) -> int:
    for module in pkgutil.iter_modules(ecr_layers.__path__):
        if module.name.startswith("_") and module.name not in ("__main__",):
            value = getattr(importlib.import_module(f"ecr_layers.{module.name}"), name, None)
            if isinstance(value, int):
                return value
    raise AssertionError(f"no module of ecr_layers defines {name}")


def test_parallel_help_states_the_library_rule(capsys: pytest.CaptureFixture[str]) -> None:
    mib = 1024 * 1024
    _, out, _ = call(capsys, "download", "--help")
    text = " ".join(out.split())
    assert f"{_library_constant('AUTO_CONNECTIONS')} for a layer of" in text
    assert f"{_library_constant('AUTO_THRESHOLD') // mib} MiB or more" in text
    assert f"first {_library_constant('CHUNK_SIZE') // mib} MiB" in text
    assert f"slower than {_library_constant('AUTO_FAST_ENOUGH') // mib} MiB/s" in text
    assert f"{_cli.PARALLEL_MIN}-{_cli.PARALLEL_MAX}" in text
    assert _library_constant("MAX_CONNECTIONS") == _cli.PARALLEL_MAX


def test_the_library_refuses_what_the_cli_refuses(local_ecr: LocalECR) -> None:
    from ecr_layers import InvalidParameter

    client = local_ecr.client()
    for parallel in (_cli.PARALLEL_MIN - 1, _cli.PARALLEL_MAX + 1):
        with pytest.raises(InvalidParameter):
            client.download_layer("team/app", "sha256:" + "a" * 64, ".", parallel=parallel)
    assert local_ecr.stats.count() == 0


def test_a_terminal_gets_a_progress_bar(local_ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    pytest.importorskip("tqdm")
    [digest] = local_ecr.push_image("team/app", [os.urandom(2_000_000)])
    parent, child = pty.openpty()
    # A terminal has a size; tqdm draws nothing on a zero-width one.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", "download", "team/app", digest, "-o", str(tmp_path)],
        stderr=child, stdout=subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    os.close(child)  # the child has its own copy; reads end with EIO when it exits
    drawn = b""
    try:
        while chunk := os.read(parent, 65536):
            drawn += chunk
    except OSError:
        pass
    finally:
        os.close(parent)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"B/s" in drawn
    assert out.decode().strip().endswith(digest.replace(":", "-"))


@pytest.mark.parametrize("digest_ok", [True, False])
def test_the_client_is_closed_on_success_and_failure(
    local_ecr: LocalECR,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    digest_ok: bool,
) -> None:
    from ecr_layers import LayerClient

    [digest] = local_ecr.push_image("team/app", [b"x"])
    closed: list[LayerClient] = []
    real_close = LayerClient.close

    def close(self: LayerClient) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(LayerClient, "close", close)
    asked = digest if digest_ok else "sha256:" + "0" * 64
    status, _, _ = call(capsys, "url", "team/app", asked)
    assert status == (0 if digest_ok else 3)
    assert len(closed) == 1
